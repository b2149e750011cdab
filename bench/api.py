"""gan-bench from Python (a notebook, a script): train, compare and load results without a shell.

Each call is the command of the same name. Its keyword arguments are that command's options,
``steps=600`` for ``--steps 600``, ``time_budget="2m"`` for ``--time-budget 2m``,
``no_eval=True`` for ``--no-eval``, ``stack=False`` for ``--no-stack``, ``hparams={"lr": 1e-4}``
for ``--set lr=0.0001``; they are parsed and checked by the command's own parser, and the runs
are trained by the same runner and plan driver, so a mistake raises the
:class:`~bench.errors.UsageError` the command would print, before anything is written. What a
call returns is the runs it wrote, loaded as :class:`Runs`::

    from bench import api

    runs = api.compare(["vanilla", "lsgan"], seeds=3, steps=600)
    runs.tables()          # the comparison tables: rows over seeds, pairwise tests
    runs.to_dataframe()    # one row per run (needs pandas)
    again = api.load_runs(runs.folder)
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from bench import console
from bench.errors import BenchError, UsageError
from bench.scores import METRIC_NAMES
from bench.report.aggregate import LoadedRun
from bench.stop import StopRequest

__all__ = ["Run", "Runs", "compare", "load_runs", "run"]


class Run(LoadedRun):
    """One run folder, its record (``run.json``, :class:`bench.record.RunRecord`) and its protocol, as ``bench
    report`` loads it (:class:`bench.report.aggregate.LoadedRun`: ``arch``, ``seed``, ``status``...)."""

    @property
    def metrics(self) -> dict[str, Any]:
        """The final metrics by name (empty for a run never evaluated)."""
        final = self.record.metrics
        return {} if final is None else {name: final.value(name) for name in METRIC_NAMES}

    def to_dict(self) -> dict[str, Any]:
        """The run as one flat row: what it trained, how long, and its final metrics."""
        cfg, timing, metrics = self.record.config, self.record.timing, self.metrics
        return {"arch": self.arch, "seed": self.seed, "status": self.status, "run_dir": str(self.path),
                "device": self.record.env.device_name, "budget": cfg.budget.text(), "steps": self.record.steps,
                "wall_s": timing.wall_s, "step_ms_median": timing.step_ms_median,
                **{name: metrics.get(name) for name in METRIC_NAMES}}


class Runs(list[Run]):
    """Runs loaded from their folders; ``folder`` is the one a call wrote (None for :func:`load_runs`), and
    ``exit_status`` the status its command would have exited with (0: every run completed)."""

    def __init__(self, runs: Iterable[Run] = (), folder: Path | None = None, exit_status: int = 0):
        super().__init__(runs)
        self.folder, self.exit_status = folder, exit_status

    def tables(self, fid_target: float | None = None) -> list[Any]:
        """The comparison tables of these runs, as ``bench report`` groups them (:class:`bench.report.aggregate.Group`:
        its ``rows`` aggregate seeds, its ``pairs`` are the tests on FID); ``fid_target`` None: the scale's default."""
        from bench.report.aggregate import group_runs

        return group_runs(list(self), fid_target)

    def to_dataframe(self) -> Any:
        """One row per run (:meth:`Run.to_dict`) as a pandas DataFrame; pandas is not a dependency of gan-bench."""
        try:
            import pandas
        except ImportError:
            raise BenchError("Runs.to_dataframe needs pandas: pip install pandas") from None
        return pandas.DataFrame([run.to_dict() for run in self])


def load_runs(*paths: str | Path) -> Runs:
    """The runs under ``paths`` (run folders, comparison or sweep folders, or folders of them), as ``bench report``
    finds them."""
    from bench.report.aggregate import load_runs as load

    return Runs(Run(loaded.path, loaded.record, loaded.protocol) for loaded in load(list(paths)))


def run(arch: str, **options: Any) -> Runs:
    """Train ``arch`` as ``bench run --arch ARCH`` does (``seeds=3``: a folder of three runs); return its run(s)."""
    return _command("run", {"arch": arch, **options})


def compare(archs: Sequence[str] | str, **options: Any) -> Runs:
    """Compare ``archs`` as ``bench compare --arch A,B`` does (``seeds=3`` for three each); return the runs."""
    return _command("compare", {"arch": archs, **options})


class _Raising(argparse.ArgumentParser):
    """The commands' parser with its usage errors raised, not printed with an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _command(name: str, options: Mapping[str, Any]) -> Runs:
    from bench.cli import build_parser

    parser = build_parser(name, parser_class=_Raising)
    argv = [name, *_argv(_flags(parser, name), options)]
    args = parser.parse_args(argv)
    args.argv, args.stop, args.written = argv, StopRequest(), None
    with console.carrying_out(argv):
        status = int(args.func(args) or 0)
    folder = Path(args.written) if args.written is not None else None
    runs = load_runs(folder) if folder is not None else Runs()
    return Runs(runs, folder, status)


def _flags(parser: argparse.ArgumentParser, name: str) -> set[str]:
    """Every option string of command ``name``."""
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices[name]._option_string_actions)


def _argv(flags: set[str], options: Mapping[str, Any]) -> list[str]:
    """``options`` as command-line words; a keyword that is no option of the command is refused."""
    argv: list[str] = []
    for key, value in options.items():
        if key == "hparams":
            argv += [word for k, v in dict(value).items() for word in ("--set", f"{k}={v}")]
            continue
        flag = "--" + key.replace("_", "-")
        if flag not in flags:
            raise UsageError(f"{key}= is not an option of this command (its options: "
                             f"{', '.join(sorted(f[2:].replace('-', '_') for f in flags if f.startswith('--')))}"
                             f", hparams)")
        if value is True:
            argv.append(flag)
        elif value is False:
            if f"--no-{flag[2:]}" in flags:
                argv.append(f"--no-{flag[2:]}")
        elif value is not None:
            words = value if isinstance(value, (list, tuple)) else [value]
            argv += [flag, ",".join(str(w) for w in words)]
    return argv
