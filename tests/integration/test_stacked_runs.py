"""Stacked seeds through the runner and the plans: each seed is still a run of its own."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from bench.cli import main
from bench.config import RunConfig
from bench.layout import CHECKPOINT, Status
from bench.registry import default_registry
from bench.stop import StopRequest
from bench.training.models import StackModel
from bench.training.runner import Runner

from helpers import ema_module, make_dist, run_cli

SETTINGS = dict(arch="vanilla", steps=30, log_every=5, eval=False, sample_every=0, batch_size=32, threads=1,
                train_subset=2000)


def stacked(tmp_path, name, seeds=(0, 1), **given):
    spec = default_registry().load("vanilla")
    runner = Runner(RunConfig(out=str(tmp_path / name), **{**SETTINGS, **given}), spec, stack_seeds=list(seeds),
                    entry=default_registry().entry("vanilla"))
    runner.train()
    return runner


def weights(runner, i):
    return {k: v.clone() for k, v in runner.model.gan(i).generator.state_dict().items()}


def interrupt_at(monkeypatch, at_step):
    """Make a stack's step send SIGTERM to this process at ``at_step``; return the step it replaced."""
    step = StackModel.step

    def interrupting(self, reals, at):
        if at == at_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, reals, at)

    monkeypatch.setattr(StackModel, "step", interrupting)
    return step


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_each_seed_of_a_stack_is_the_run_its_seed_makes_alone(tmp_path):
    stack = stacked(tmp_path, "stack")
    spec = default_registry().load("vanilla")
    for i, seed in enumerate((0, 1)):
        alone = Runner(RunConfig(out=str(tmp_path / "alone"), seed=seed, **SETTINGS), spec)
        alone.train()
        own = [h[k] for h in stack.runs[i].state.history for k in ("d_loss", "g_loss")]
        single = [h[k] for h in alone.run.state.history for k in ("d_loss", "g_loss")]
        assert len(own) == len(single) == 60
        assert own == pytest.approx(single, rel=1e-4)  # float32: the float64 proof is in tests/unit/test_stack.py
        assert sorted(p.name for p in stack.runs[i].dir.iterdir()) == sorted(p.name for p in alone.run.dir.iterdir())
        record = json.loads((stack.runs[i].dir / "run.json").read_text())
        assert record["config"]["seed"] == seed and record["status"] == "completed"
        info = record["stack"]
        assert info["seeds"] == [0, 1] and info["size"] == 2 and info["id"] == stack.stack_id
        assert sorted(info["runs"]) == sorted(r.dir.name for r in stack.runs)
        assert info["step_ms_per_seed"] == pytest.approx(record["timing"]["step_ms_median"] / 2)
        assert "stack" not in json.loads((alone.run.dir / "run.json").read_text())


def test_a_diverged_seed_stops_at_its_step_while_the_others_train_on_untouched(tmp_path, monkeypatch):
    clean = stacked(tmp_path, "clean")
    step = StackModel.step

    def poisoning(self, reals, at):
        out = step(self, reals, at)
        if at == 12:  # seed 1's generator blows up; nothing of it may reach seed 0
            with torch.no_grad():
                next(iter(self.stack.nets["generator"].params.values()))[1].fill_(float("nan"))
        return out

    monkeypatch.setattr(StackModel, "step", poisoning)
    poisoned = stacked(tmp_path, "poisoned")
    first, second = poisoned.records
    assert first.status is Status.COMPLETED and first.steps == 30
    assert second.status is Status.DIVERGED and 12 <= second.diverged_at_step < 15 and second.steps <= 15
    assert poisoned.runs[0].state.history == clean.runs[0].state.history
    assert same_weights(weights(poisoned, 0), weights(clean, 0))
    assert json.loads((poisoned.runs[1].dir / "run.json").read_text())["status"] == "diverged"


def test_an_interrupted_stack_resumes_from_any_of_its_run_folders_bit_exactly(tmp_path, monkeypatch):
    whole = stacked(tmp_path, "whole")
    stop = StopRequest()
    step = interrupt_at(monkeypatch, 17)
    spec = default_registry().load("vanilla")
    first = Runner(RunConfig(out=str(tmp_path / "cut"), **SETTINGS), spec, stack_seeds=[0, 1], stop=stop)
    first.train()
    assert [r.status for r in first.records] == [Status.INTERRUPTED] * 2
    assert all((run.dir / CHECKPOINT).is_file() for run in first.runs)
    monkeypatch.setattr(StackModel, "step", step)

    resumed = Runner.resume(first.runs[1].dir, default_registry().load)  # the second seed's folder: the whole stack
    assert [run.dir for run in resumed.runs] == [run.dir for run in first.runs]
    resumed.train()
    assert [r.status for r in resumed.records] == [Status.COMPLETED] * 2
    for i in range(2):
        assert resumed.runs[i].state.history == whole.runs[i].state.history
        assert same_weights(weights(resumed, i), weights(whole, i))
        assert not (first.runs[i].dir / CHECKPOINT).exists()


def test_stacks_through_the_command_line_evaluate_and_report_like_any_runs(tmp_path):
    out = tmp_path / "runs"
    made = run_cli("run", "--arch", "vanilla", "--seeds", "3", "--stack", "--stack-size", "2", "--steps", "20",
                   "--train-subset", "2000", "--eval-samples", "300", "--threads", "1", "--out", str(out))
    assert made.returncode == 0, made.stderr
    (plan,) = out.iterdir()
    records = [json.loads(p.read_text()) for p in sorted(plan.glob("*/run.json"))]
    assert sorted(r["config"]["seed"] for r in records) == [0, 1, 2]
    # at most --stack-size seeds per stack; a seed left over trains alone
    assert sorted(r["stack"]["size"] if "stack" in r else 1 for r in records) == [1, 2, 2]
    assert all(r["status"] == "completed" and r["metrics"]["fid"] > 0 for r in records)
    report = run_cli("report", str(plan), "--format", "md")
    assert report.returncode == 0, report.stderr
    assert "§" in report.stdout and "stack of 2 seeds" in report.stdout


def test_an_interrupted_stacked_comparison_resumes_its_stack(tmp_path, monkeypatch):
    step = interrupt_at(monkeypatch, 9)
    out = tmp_path / "runs"
    args = ["compare", "--arch", "vanilla", "--seeds", "2", "--stack", "--steps", "20", "--train-subset", "2000",
            "--no-eval", "--threads", "1", "--out", str(out)]
    assert main(args) == 128 + signal.SIGTERM
    (plan,) = out.iterdir()
    cut = {p.parent.name: json.loads(p.read_text()) for p in plan.glob("*/run.json")}
    assert [r["status"] for r in cut.values()] == ["interrupted"] * 2 and all(r["steps"] == 10 for r in cut.values())
    monkeypatch.setattr(StackModel, "step", step)
    assert main(["compare", "--resume", str(plan)]) == 0
    done = {p.parent.name: json.loads(p.read_text()) for p in plan.glob("*/run.json")}
    assert done.keys() == cut.keys()  # the same folders, continued
    assert all(r["status"] == "completed" and r["steps"] == 20 for r in done.values())
    assert {r["stack"]["id"] for r in done.values()} == {r["stack"]["id"] for r in cut.values()}
    assert all(done[k]["started"] == cut[k]["started"] for k in cut)


def test_an_architecture_that_cannot_be_stacked_trains_its_seeds_separately_saying_why(tmp_path, monkeypatch):
    make_dist(tmp_path, "ema-plugin", {"ema": "ema_arch:SPEC"}, {"ema_arch": ema_module("ema")})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "runs"
    made = run_cli("run", "--arch", "ema", "--seeds", "2", "--stack", "--steps", "10", "--no-eval", "--out", str(out))
    assert made.returncode == 0, made.stderr
    why = [line for line in made.stderr.splitlines() if "cannot be stacked" in line]
    assert len(why) == 1 and "train_step without stack_step" in why[0] and "one after another" in why[0]
    records = [json.loads(p.read_text()) for p in out.glob("*/*/run.json")]
    assert len(records) == 2 and all(r["status"] == "completed" and "stack" not in r for r in records)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "2", "--stack", "--jobs", "2"], "--stack trains its stacks here one after another"),
    (["--stack"], "--stack goes with --seeds"),
    (["--seeds", "2", "--stack-size", "0"], "--stack-size must be at least 1"),
    (["--seeds", "2", "--no-stack", "--stack-size", "2"], "--stack-size goes with stacks"),
])
def test_stack_options_that_cannot_work_are_refused_before_anything_is_written(tmp_path, args, message):
    proc = run_cli("run", "--arch", "vanilla", "--steps", "5", "--out", str(tmp_path / "runs"), *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_run_resume_of_a_stacked_comparison_folder_resumes_the_comparison(tmp_path, monkeypatch):
    step = interrupt_at(monkeypatch, 9)
    out = tmp_path / "runs"
    assert main(["run", "--arch", "vanilla", "--seeds", "2", "--stack", "--steps", "20", "--train-subset", "2000",
                 "--no-eval", "--threads", "1", "--out", str(out)]) == 128 + signal.SIGTERM
    (plan,) = out.iterdir()
    monkeypatch.setattr(StackModel, "step", step)
    assert main(["run", "--resume", str(plan)]) == 0
    done = [json.loads(p.read_text()) for p in plan.glob("*/run.json")]
    assert len(done) == 2 and all(r["status"] == "completed" and r["steps"] == 20 for r in done)
