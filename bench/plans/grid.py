"""Hyperparameter grids: ``--grid KEY=V1,V2`` options and TOML grid files, expanded into points.

Every point is converted to its field's type and checked against the architecture's config
before anything runs, so a typo stops a sweep at once rather than hours in.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from bench.contract import ArchSpec
from bench.errors import UsageError

_OPEN, _CLOSE = "([", ")]"


def split_values(text: str) -> list[str]:
    """Split ``a,b,c`` on the commas outside brackets, so ``(0.5,0.9),(0.0,0.9)`` is two values."""
    values, depth, current = [], 0, ""
    for char in text:
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


@dataclasses.dataclass
class Grid:
    """Values per hyperparameter for every architecture, and per architecture on top of them."""

    common: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    per_arch: dict[str, dict[str, list[Any]]] = dataclasses.field(default_factory=dict)
    file: str | None = None
    #: The keys of ``common`` given by ``--grid`` options rather than by the file.
    options: list[str] = dataclasses.field(default_factory=list)

    def for_arch(self, arch: str) -> dict[str, list[Any]]:
        """The grid of ``arch``: its own table's keys replace the common ones."""
        return {**self.common, **self.per_arch.get(arch, {})}


def read_grid_file(path: str) -> Grid:
    """Read a TOML grid file: a ``[grid]`` table of ``key = [values]``, and ``[grid.ARCH]`` tables."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError("--grid-file needs Python 3.11 or newer, or: pip install tomli") from None
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"--grid-file {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib decodes the whole file first
        raise UsageError(f"--grid-file {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--grid-file {path}: invalid TOML ({exc})") from None
    table = data.get("grid")
    if not isinstance(table, dict) or not table:
        raise UsageError(f"--grid-file {path}: no [grid] table; write e.g. [grid] then lr = [1e-4, 2e-4]")
    grid = Grid(file=path)
    for key, value in table.items():
        if isinstance(value, dict):
            grid.per_arch[key] = {k: _values(path, f"grid.{key}.{k}", v) for k, v in value.items()}
        else:
            grid.common[key] = _values(path, f"grid.{key}", value)
    return grid


def _values(path: str, where: str, value: Any) -> list[Any]:
    """Return the values of one grid key: each a scalar, or a flat list of scalars (a tuple's value)."""
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, dict) for v in values):
        raise UsageError(f"--grid-file {path}: {where} must be a value or a non-empty list of values")
    for v in values:
        items = v if isinstance(v, list) else []
        if any(isinstance(item, dict) for item in items):
            raise UsageError(f"--grid-file {path}: {where} holds a table inside a list; give a value or a list "
                             "of values")
        if any(isinstance(item, list) for item in items):
            raise UsageError(f"--grid-file {path}: {where} nests lists more than two deep; give a value, a list "
                             "of values, or a list of lists for a tuple hyperparameter")
    return values


def make_grid(options: list[tuple[str, list[str]]], grid_file: str | None) -> Grid:
    """The grid of ``--grid-file`` with the ``--grid`` options on top (they win on a shared key)."""
    grid = read_grid_file(grid_file) if grid_file else Grid()
    seen: set[str] = set()
    for key, values in options:
        if key in seen:
            raise UsageError(f"--grid {key}=... given twice; put all its values in one option: --grid {key}=A,B")
        seen.add(key)
        grid.common[key] = values
        grid.options.append(key)
    return grid


def _where(grid: Grid, arch: str, key: str) -> str:
    """Return where ``arch``'s values of ``key`` come from: ``--grid``, ``[grid] in F`` or ``[grid.ARCH] in F``."""
    if key in grid.per_arch.get(arch, {}):
        return f"[grid.{arch}] in {grid.file}"
    return "--grid" if key in grid.options or grid.file is None else f"[grid] in {grid.file}"


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def grid_points(arch: str, spec: ArchSpec, grid: Grid, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of ``arch``'s grid (the cartesian product), each value converted to its field's type.

    Raises:
        UsageError: a key the architecture does not have, a value that does not convert, or
            a point given twice.
    """
    keys = sorted(f.name for f in dataclasses.fields(spec.config))
    table = grid.for_arch(arch)
    for key, values in table.items():
        if key not in keys:
            raise UsageError(f"{_where(grid, arch, key)} key {key!r} is not a hyperparameter of {arch}; "
                             f"{arch} has: {', '.join(keys)}")
        if key in fixed:
            raise UsageError(f"{key!r} is given both by --set and by the grid; keep one")
        for value in values:  # each value on its own first, so the message can say where it came from
            try:
                spec.make_config({**fixed, key: value})
            except UsageError as exc:
                raise UsageError(f"{arch}: {exc} (from {_where(grid, arch, key)})") from None
    points = []
    for values in itertools.product(*table.values()):
        point = dict(zip(table, values, strict=True))
        try:
            cfg = spec.make_config({**fixed, **point})
        except UsageError as exc:
            raise UsageError(f"{arch}: {exc}") from None
        typed = {k: _json_value(getattr(cfg, k)) for k in point}
        if typed in points:
            raise UsageError(f"{arch}: the grid gives the point {_point_text(typed)} twice")
        points.append(typed)
    return points


def _point_text(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"
