"""Find architectures through entry points first, load them second.

Every architecture, built-in or third-party, is an entry point in the group
``gan_bench.architectures`` whose object is an :class:`~bench.contract.ArchSpec`.
Discovery reads the installed distributions' metadata without importing anything and
sorts the names; a plugin is imported only when it is used, and one that fails to import
is reported by name without taking the others down. A name that two packages declare is
unusable until one is uninstalled; every other name keeps working.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata as md
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple
from collections.abc import Iterable

from bench.contract import ArchSpec
from bench.errors import PluginError, RegistryError

GROUP = "gan_bench.architectures"


@dataclass(frozen=True)
class Entry:
    """A discovered, not yet loaded, architecture."""

    name: str
    package: str
    version: str
    value: str
    entry_point: md.EntryPoint = field(compare=False, repr=False)
    #: Other packages that declare the same name; while there are any, the name cannot be used.
    clashes: tuple[str, ...] = ()

    def clash(self) -> RegistryError | None:
        """The error of using a name that several packages declare, or None."""
        if not self.clashes:
            return None
        *first, last = sorted({self.package, *self.clashes})
        count = "two" if len(first) == 1 else "several"
        return RegistryError(f"architecture {self.name!r} is registered by {count} packages: "
                             f"{', '.join(first)} and {last}; uninstall {'one' if count == 'two' else 'all but one'}")


class Loaded(NamedTuple):
    """An entry after loading: its spec, or the error that kept it from loading (or from being used)."""

    entry: Entry
    spec: ArchSpec | None
    error: PluginError | RegistryError | None


def _normalize(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def discover(distributions: Iterable[md.Distribution] | None = None) -> list[Entry]:
    """Return the architectures declared by installed distributions, sorted by name.

    A name declared by two different packages is returned once, with the other packages in
    ``clashes``: it fails when used, and only it (one bad install must not stop every command).
    """
    dists = md.distributions() if distributions is None else distributions
    found: dict[str, Entry] = {}
    for dist in dists:
        package = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != GROUP:
                continue
            previous = found.get(ep.name)
            if previous is None:
                found[ep.name] = Entry(ep.name, package, dist.version or "?", ep.value, ep)
            elif _normalize(package) not in map(_normalize, (previous.package, *previous.clashes)):
                found[ep.name] = dataclasses.replace(previous, clashes=(*previous.clashes, package))
            # The same distribution seen twice on sys.path (an editable install) is one entry.
    return [found[name] for name in sorted(found)]


class Registry:
    """The discovered architectures, loaded on use and cached."""

    def __init__(self, entries: list[Entry]):
        self.entries = {e.name: e for e in entries}
        self._loaded: dict[str, ArchSpec] = {}

    def names(self) -> list[str]:
        return sorted(self.entries)

    def entry(self, name: str) -> Entry:
        """Return the entry of ``name``, or fail naming the known ones and the closest match.

        Raises:
            RegistryError: no architecture of that name, or several packages declare it.
        """
        try:
            entry = self.entries[name]
        except KeyError:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RegistryError(
                f"unknown architecture {name!r}{hint}; known: {', '.join(known) or 'none installed'}"
            ) from None
        clash = entry.clash()
        if clash is not None:
            raise clash
        return entry

    def load(self, name: str) -> ArchSpec:
        """Import the plugin ``name`` and return its spec.

        Raises:
            RegistryError: no architecture of that name, or several packages declare it.
            PluginError: it failed to import, or its object is not a valid ArchSpec.
        """
        if name in self._loaded:
            return self._loaded[name]
        entry = self.entry(name)
        where = f"(package {entry.package}, {entry.value})"
        try:
            spec = entry.entry_point.load()
        except Exception as exc:  # a plugin may raise anything on import
            raise PluginError(name, f"failed to load {where}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(spec, ArchSpec):
            raise PluginError(name, f"{entry.value} is a {type(spec).__name__}, not a bench.contract.ArchSpec {where}")
        if spec.name != name:
            raise PluginError(
                name, f"its spec is named {spec.name!r}; the entry point and spec names must match {where}")
        self._loaded[name] = spec
        return spec

    def load_all(self) -> list[Loaded]:
        """Load every architecture; a failure is returned beside its entry, not raised."""
        rows = []
        for name in self.names():
            try:
                rows.append(Loaded(self.entries[name], self.load(name), None))
            except (PluginError, RegistryError) as exc:
                rows.append(Loaded(self.entries[name], None, exc))
        return rows


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of the architectures installed in this environment."""
    return Registry(discover())
