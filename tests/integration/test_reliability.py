"""Earned results are never lost: signals outside the loop, a full disk, a failing generator, two
processes on one folder, a moved comparison, a write killed mid-way, and divergence that a loss
refuses to compute."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.config import RunConfig
from bench.layout import CHECKPOINT, GENERATOR, PLAN, RUN_JSON, Status
from bench.metrics.evaluator import Evaluator
from bench.record import read_record
from bench.registry import default_registry
from bench.stop import StopRequest
from bench.storage import folder_lock
from bench.training.runner import Runner

from helpers import REPO, StopAfter, run_cli

SMALL = dict(arch="vanilla", steps=12, log_every=4, sample_every=0, batch_size=32)


class SignalOnEvaluate:
    """An evaluator that sends ``signum`` to this process as the evaluation starts."""

    def __init__(self, evaluator: Evaluator, signum: int):
        self.evaluator, self.signum = evaluator, signum

    def evaluate(self, gan, stop=None):
        os.kill(os.getpid(), self.signum)
        return self.evaluator.evaluate(gan, stop)

    def reference_points(self):
        return self.evaluator.reference_points()


def _signalling(spec, at_step: int, signals: list[int]):
    """Wrap ``spec`` so that its training step sends ``signals`` to this process at ``at_step``."""
    def build(cfg, device):
        gan = spec.build(cfg, device)

        class Signalling(type(gan)):
            def train_step(self, real, step):
                if step == at_step:
                    for s in signals:
                        os.kill(os.getpid(), s)
                return super().train_step(real, step)

        gan.__class__ = Signalling
        return gan

    return dataclasses.replace(spec, build=build)


def _generator(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / GENERATOR, weights_only=True)


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator("cpu", n_samples=300)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_final_evaluation_checkpoints_and_resume_evaluates(tmp_path, evaluator, signum):
    spec = default_registry().load("vanilla")
    whole = Runner(RunConfig(out=str(tmp_path / "a"), **SMALL), spec, evaluator).train()

    cut = Runner(RunConfig(out=str(tmp_path / "b"), **SMALL), spec, SignalOnEvaluate(evaluator, signum))
    cut.train()
    run_dir = cut.run.dir
    record = read_record(run_dir)
    assert record.status is Status.INTERRUPTED and record.stop_signal == signal.Signals(signum).name
    assert record.steps == 12 and (run_dir / CHECKPOINT).is_file()

    final = Runner.resume(run_dir, default_registry().load, evaluator).train()
    untimed = lambda m: dataclasses.replace(m, eval_s=None)  # noqa: E731
    assert final.status is Status.COMPLETED and final.steps == 12 and untimed(final.metrics) == untimed(whole.metrics)
    assert not (run_dir / CHECKPOINT).exists()


def test_ctrl_c_in_the_last_batch_ends_in_a_run_that_resume_completes(tmp_path, evaluator):
    spec = default_registry().load("vanilla")
    uncut = Runner(RunConfig(out=str(tmp_path / "a"), **SMALL), spec, evaluator)
    whole = uncut.train()

    cut = Runner(RunConfig(out=str(tmp_path / "b"), **SMALL), _signalling(spec, 11, [signal.SIGINT]), evaluator)
    cut.train()  # the stop is seen just after the last batch
    run_dir = cut.run.dir
    record = read_record(run_dir)
    assert record.status is Status.INTERRUPTED and record.steps == 12 and (run_dir / CHECKPOINT).is_file()

    final = Runner.resume(run_dir, default_registry().load, evaluator).train()
    untimed = lambda m: dataclasses.replace(m, eval_s=None)  # noqa: E731
    assert final.status is Status.COMPLETED and final.steps == 12 and untimed(final.metrics) == untimed(whole.metrics)
    a, b = _generator(uncut.run.dir), _generator(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_signals_20ms_apart_end_at_a_batch_boundary_with_a_checkpoint(tmp_path):
    spec = default_registry().load("vanilla")
    cfg = dict(SMALL, eval=False)
    whole = Runner(RunConfig(out=str(tmp_path / "a"), **cfg), spec)
    whole.train()

    cut = Runner(RunConfig(out=str(tmp_path / "b"), **cfg), _signalling(spec, 5, [signal.SIGINT, signal.SIGINT]))
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    run_dir = cut.run.dir
    saved = read_record(run_dir)
    assert saved.status is Status.INTERRUPTED and saved.steps == 6  # the step in flight finished first
    assert (run_dir / CHECKPOINT).is_file()

    Runner.resume(run_dir, default_registry().load).train()
    a, b = whole.gan.generator.state_dict(), _generator(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-exact, as an uninterrupted run


def test_sighup_stops_a_run_like_sigterm(tmp_path):
    spec = _signalling(default_registry().load("vanilla"), 3, [signal.SIGHUP])
    runner = Runner(RunConfig(out=str(tmp_path), **dict(SMALL, eval=False)), spec)
    record = runner.train()
    assert record.status is Status.INTERRUPTED and record.stop_signal == "SIGHUP"
    assert (runner.run.dir / CHECKPOINT).is_file()


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    fake = tmp_path / "rich"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise KeyboardInterrupt\n")  # as if Ctrl-C came inside `import rich`
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = run_cli("list", env=env)
    assert proc.returncode == 130 and proc.stderr.strip() == "error: interrupted"


def _file_size_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_ends_with_one_line_and_a_failed_run_json(tmp_path):
    args = [sys.executable, "-m", "bench", "run", "--arch", "vanilla", "--steps", "20", "--no-eval",
            "--sample-every", "0", "--out", str(tmp_path)]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limit(1_000_000))  # generator.pt is 6 MB
    (run_dir,) = tmp_path.iterdir()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "inline_container" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: no space left for {run_dir / GENERATOR}")
    saved = read_record(run_dir)
    assert saved.status is Status.FAILED and saved.steps == 20 and "no space left" in saved.error
    assert not list(run_dir.glob(".*.tmp"))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_small_tmpfs_as_out(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)]).returncode:
        pytest.skip("this machine does not let tests mount a tmpfs")
    try:
        proc = run_cli("run", "--arch", "vanilla", "--steps", "20", "--no-eval", "--sample-every", "0",
                       "--out", str(mount))
        (run_dir,) = mount.iterdir()
        assert proc.returncode == 1 and "no space left for" in proc.stderr and "Traceback" not in proc.stderr
        assert read_record(run_dir).status is Status.FAILED and read_record(run_dir).steps == 20
    finally:
        subprocess.run(["umount", str(mount)])


def _breaking_generate(spec, how: str):
    def build(cfg, device):
        gan = spec.build(cfg, device)

        class Broken(type(gan)):
            def generate(self, z):
                if how == "raise":
                    raise RuntimeError("generate is broken")
                if how == "range":
                    return super().generate(z) + 2  # outside [-1, 1]
                return super().generate(z)[:, :, :5]  # the wrong shape

        gan.__class__ = Broken
        return gan

    return dataclasses.replace(spec, build=build)


@pytest.mark.parametrize("how, message", [("raise", "generate is broken"), ("shape", "generate returned shape"),
                                          ("range", "generate returned values in")])
def test_a_failing_generate_leaves_a_failed_run_json_with_what_was_earned(tmp_path, how, message):
    spec = _breaking_generate(default_registry().load("vanilla"), how)
    runner = Runner(RunConfig(out=str(tmp_path), **dict(SMALL, eval=False)), spec)
    with pytest.raises(Exception, match=message):
        runner.train()
    saved = read_record(runner.run.dir)
    assert saved.status is Status.FAILED and saved.steps == 12 and message in saved.error
    assert (runner.run.dir / GENERATOR).is_file()  # the trained generator is kept


@pytest.mark.parametrize("command, points", [("compare", ["--seeds", "1"]), ("sweep", ["--grid", "lr=1e-4"])])
def test_a_plan_in_use_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, capsys, command, points):
    args = [command, "--arch", "vanilla", *points, "--steps", "2", "--no-eval", "--sample-every", "0", "--jobs", "1",
            "--out", str(tmp_path)]
    assert main(args) == 0
    (folder,) = tmp_path.iterdir()
    capsys.readouterr()
    with folder_lock(folder, f"bench {command}"):
        assert main([command, "--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{folder} is in use by process {os.getpid()}" in err
    (folder / ".gan-bench.lock").write_text(f"process 999999 on a-host (bench {command}, since long ago)\n")
    assert main([command, "--resume", str(folder)]) == 0  # nobody holds it: taken over


def test_a_run_in_use_is_refused(tmp_path, capsys):
    runner = Runner(RunConfig(out=str(tmp_path), **dict(SMALL, eval=False)), default_registry().load("vanilla"),
                    stop=_stop_at_once())
    runner.train()
    capsys.readouterr()
    with folder_lock(runner.run.dir, "bench run"):
        assert main(["run", "--resume", str(runner.run.dir)]) == 2
    assert "is in use by process" in capsys.readouterr().err


def _stop_at_once() -> StopRequest:
    stop = StopRequest()
    stop.request(signal.SIGINT)
    return stop


def test_a_moved_comparison_resumes_from_its_checkpoints(tmp_path, capsys):
    args = ["compare", "--arch", "vanilla", "--seeds", "2", "--steps", "12", "--no-eval", "--sample-every", "0",
            "--jobs", "1",
            "--log-every", "4", "--out", str(tmp_path / "here")]
    assert main(args, stop=StopAfter(6)) == 128 + signal.SIGINT
    (folder,) = (tmp_path / "here").iterdir()
    moved = Path(shutil.move(str(folder), str(tmp_path / "there")))
    plan = json.loads((moved / PLAN).read_text())
    cut = moved / plan["runs"][0]["run_dir"]
    assert plan["runs"][0]["status"] == "interrupted" and (cut / CHECKPOINT).is_file()
    kept_steps = read_record(cut).steps
    assert main(["compare", "--resume", str(moved), "--jobs", "1"]) == 0
    plan = json.loads((moved / PLAN).read_text())
    assert [r["status"] for r in plan["runs"]] == ["completed", "completed"]
    assert moved / plan["runs"][0]["run_dir"] == cut and 0 < kept_steps < 12  # resumed in place
    assert sorted(p.name for p in moved.iterdir() if p.is_dir()) == sorted(r["run_dir"] for r in plan["runs"])
    capsys.readouterr()
    assert main(["report", str(moved), "--format", "csv", "--no-figures"]) == 0
    assert ",2,0 1," in capsys.readouterr().out  # two runs, seeds 0 and 1: no orphan counted


def test_resume_removes_the_temporary_file_of_a_killed_checkpoint_write(tmp_path):
    spec = default_registry().load("vanilla")
    runner = Runner(RunConfig(out=str(tmp_path), **dict(SMALL, eval=False)), spec, stop=StopAfter(5))
    runner.train()
    run_dir = runner.run.dir
    leftover = run_dir / ".checkpoint.pt.k1ll3d.tmp"
    leftover.write_bytes(b"half a checkpoint")
    Runner.resume(run_dir, default_registry().load).train()
    assert not leftover.exists() and read_record(run_dir).status is Status.COMPLETED


def test_two_identical_runs_write_byte_identical_generators(tmp_path):
    spec = default_registry().load("vanilla")
    dirs = []
    for name in ("a", "b"):
        runner = Runner(RunConfig(out=str(tmp_path / name), **dict(SMALL, eval=False)), spec)
        runner.train()
        dirs.append(runner.run.dir)
    assert (dirs[0] / GENERATOR).read_bytes() == (dirs[1] / GENERATOR).read_bytes()


@pytest.mark.parametrize("arch", ["vanilla", "dcgan", "lsgan", "wgan-gp"])
def test_a_loss_that_refuses_nan_inputs_ends_diverged_not_failed(tmp_path, arch):
    cfg = RunConfig(arch, steps=6, log_every=50, sample_every=0, batch_size=16, eval=False, out=str(tmp_path),
                    hparams={"lr": "1e30"})
    record = Runner(cfg, default_registry().load(arch)).train()
    assert record.status is Status.DIVERGED and record.error is None
    assert record.diverged_at_step is not None and record.diverged_at_step <= record.steps
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / RUN_JSON).read_text())["status"] == "diverged"


def _damage_missing(ckpt):
    del ckpt["history"]


def _damage_type(ckpt):
    ckpt["step"] = "twelve"


def _damage_shape(ckpt):
    weights = ckpt["gan"]["networks"]["generator"]
    weights[next(iter(weights))] = torch.zeros(3)


def _damage_position(ckpt):
    ckpt["sampler"]["batch"] = 10**6


@pytest.mark.parametrize("damage, message", [
    (_damage_missing, "is damaged (missing history)"),
    (_damage_type, "is damaged (step is a string, expected an integer)"),
    (_damage_shape, "does not fit this architecture"),
    (_damage_position, "is damaged (sampler position epoch 0, batch 1000000"),
    (lambda ckpt: ckpt.clear() or ckpt.update(x=[1]), "is damaged (missing step"),
])
def test_a_damaged_checkpoint_is_a_usage_error_naming_the_file(tmp_path, capsys, damage, message):
    runner = Runner(RunConfig(out=str(tmp_path), **dict(SMALL, eval=False)), default_registry().load("vanilla"),
                    stop=StopAfter(3))
    runner.train()
    path = runner.run.dir / CHECKPOINT
    ckpt = torch.load(path, weights_only=True)
    damage(ckpt)
    torch.save(ckpt, path)
    capsys.readouterr()
    assert main(["run", "--resume", str(runner.run.dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err and "Traceback" not in err
