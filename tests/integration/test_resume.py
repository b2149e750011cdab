"""Interruption writes a checkpoint; resuming gives exactly the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from bench.config import RunConfig
from bench.layout import CHECKPOINT, Status
from bench.registry import default_registry
from bench.training.runner import Runner

from helpers import REPO


def _interrupting(spec, at_step: int, signum: int = signal.SIGINT):
    """Wrap ``spec`` so that its training step sends ``signum`` to this process at ``at_step``."""
    def build(cfg, device):
        gan = spec.build(cfg, device)

        class Interrupting(type(gan)):
            def train_step(self, real, step):
                if step == at_step:
                    os.kill(os.getpid(), signum)
                return super().train_step(real, step)

        gan.__class__ = Interrupting
        return gan

    from dataclasses import replace
    return replace(spec, build=build)


def _weights(runner):
    return {k: v.clone() for k, v in runner.gan.generator.state_dict().items()}


def test_signal_checkpoints_and_resume_equals_uninterrupted(tmp_path):
    spec = default_registry().load("vanilla")
    cfg = dict(arch="vanilla", steps=23, log_every=5, eval=False, sample_every=0, batch_size=32)

    whole = Runner(RunConfig(out=str(tmp_path / "a"), **cfg), spec)
    whole.train()

    first = Runner(RunConfig(out=str(tmp_path / "b"), **cfg), _interrupting(spec, at_step=11, signum=signal.SIGTERM),
                   entry=default_registry().entry("vanilla"))
    record = first.train()
    assert record.status is Status.INTERRUPTED and record.stop_signal == "SIGTERM"
    assert record.steps == 12  # the batch in flight finished; none started after
    run_dir = first.run.dir
    assert (run_dir / CHECKPOINT).is_file()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"

    resumed = Runner.resume(run_dir, default_registry().load)
    assert resumed.run.state.step == 12
    final = resumed.train()
    assert final.status is Status.COMPLETED and final.steps == 23
    assert final.package == "gan-bench" and final.package_version == record.package_version  # kept from run.json
    assert [h["d_loss"] for h in resumed.run.state.history] == [h["d_loss"] for h in whole.run.state.history]
    assert [h["g_loss"] for h in resumed.run.state.history] == [h["g_loss"] for h in whole.run.state.history]
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (run_dir / CHECKPOINT).exists(), "a completed run keeps no checkpoint"
    assert final.images_seen == whole.run.record().images_seen


def test_sigint_to_a_real_process_then_resume(tmp_path):
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "bench", "run", "--arch", "vanilla", "--steps", "150", "--no-eval",
            "--log-every", "10", "--sample-every", "0", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("*/run.json")):
        time.sleep(0.05)
    time.sleep(0.3)  # let it train a few batches
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    (run_dir,) = out.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    if record["status"] == "completed":  # the machine was fast enough to finish first
        return
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    assert record["status"] == "interrupted" and 0 < record["steps"] < 150

    resumed = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(run_dir)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads((run_dir / "run.json").read_text())
    assert done["status"] == "completed" and done["steps"] == 150

    spec = default_registry().load("vanilla")
    whole = Runner(RunConfig("vanilla", steps=150, eval=False, log_every=10, sample_every=0, out=str(tmp_path / "w")),
                   spec)
    whole.train()
    saved = torch.load(run_dir / "generator.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in whole.gan.generator.state_dict().items())
    again = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(run_dir)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stdout
