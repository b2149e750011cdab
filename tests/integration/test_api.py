"""bench.api: the commands from Python, through the same parser, runner and plan driver."""

from __future__ import annotations

import os
import re
import sys

import pytest

from bench import api, console
from bench.errors import UsageError
from helpers import REPO

#: One run at a time in this process, as the compare tests run them.
SMALL = {"steps": 30, "log_every": 10, "sample_every": 0, "eval_every": 15, "eval_samples": 500, "jobs": 1}


def test_compare_from_python_returns_the_runs_it_wrote_and_their_tables(tmp_path):
    runs = api.compare(["vanilla", "lsgan"], seeds=2, out=tmp_path, **SMALL)
    assert runs.exit_status == 0 and runs.folder.parent == tmp_path and runs.folder.name.startswith("compare-")
    assert sorted((r.arch, r.seed, r.status) for r in runs) == [
        ("lsgan", 0, "completed"), ("lsgan", 1, "completed"), ("vanilla", 0, "completed"), ("vanilla", 1, "completed")]
    assert all(r.metrics["fid"] > 0 and r.record.steps == 30 for r in runs)
    (table,) = runs.tables()
    assert [row.arch for row in table.rows] == ["lsgan", "vanilla"] and len(table.pairs) == 1
    assert [r.to_dict() for r in api.load_runs(runs.folder)] == [r.to_dict() for r in runs]


def test_a_mistake_raises_the_commands_own_error_before_anything_is_written(tmp_path):
    with pytest.raises(UsageError, match="--steps must be a positive number, got 0"):
        api.compare(["vanilla"], steps=0, out=tmp_path)
    with pytest.raises(UsageError, match=r"stepz= is not an option of this command \(its options: .*steps"):
        api.run("vanilla", stepz=5, out=tmp_path)
    with pytest.raises(UsageError, match="unknown architecture 'vanila'"):
        api.run("vanila", steps=5, out=tmp_path)
    with pytest.raises(UsageError, match="--set lr is given twice"):
        api.run("vanilla", steps=5, hparams={"lr": 1e-4}, set="lr=2e-4", out=tmp_path)
    assert not list(tmp_path.iterdir())


def test_run_from_python_with_flags_and_hyperparameters(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "kernel.json"])  # as in a notebook
    runs = api.run("vanilla", steps=5, no_eval=True, hparams={"lr": 1e-4}, out=tmp_path)
    (run,) = runs
    # the run records the command line that makes it again, not the notebook's
    assert (run.record.env.program, run.record.env.argv) == (
        "python -m bench", ["run", "--arch", "vanilla", "--steps", "5", "--no-eval", "--set", "lr=0.0001",
                            "--out", str(tmp_path)])
    assert console.COMMAND_VARIABLE not in os.environ
    assert (run.status, run.metrics, run.record.config.hparams["lr"]) == ("completed", {}, 1e-4)
    assert runs.folder == run.path and runs.exit_status == 0
    pandas = pytest.importorskip("pandas")
    frame = runs.to_dataframe()
    assert isinstance(frame, pandas.DataFrame) and list(frame["arch"]) == ["vanilla"] and frame["fid"].isna().all()


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    page = (REPO / "docs" / "api.md").read_text()
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)  # its runs land in ./results/runs, here
    exec(compile(example, "docs/api.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "results/runs/compare-" in printed
    assert len(re.findall(r"^(?:vanilla|lsgan) [012] completed \d", printed, re.MULTILINE)) == 6
