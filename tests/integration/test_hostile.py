"""Nothing written outside the folders the user names, nothing removed that a live process holds, and no
earned run lost to a killed process or a damaged file: each case as an attacker or an unlucky user meets it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.config import RunConfig
from bench.layout import CHECKPOINT, LOCK, PLAN, RUN_JSON, TENSORBOARD, Status
from bench.record import read_record
from bench.registry import default_registry
from bench.report.aggregate import load_runs
from bench.runfolder import DAMAGED
from bench.storage import folder_lock, lock_holder
from bench.training.runner import Runner

from helpers import REPO, StopAfter

SMALL = dict(arch="vanilla", steps=12, log_every=4, sample_every=0, batch_size=32, eval=False, threads=1)
#: A comparison that trains long enough (seconds) for a process to be killed while it trains.
LONG = ["--steps", "1200", "--log-every", "50", "--sample-every", "0", "--threads", "1", "--no-eval",
        "--timing-rounds", "0", "--train-subset", "4000"]


def interrupted(tmp_path: Path, seeds: list[int] | None = None) -> list[Path]:
    """An interrupted run (or stack of ``seeds``) with its checkpoints; its run folders."""
    runner = Runner(RunConfig(out=str(tmp_path / "runs"), **SMALL), default_registry().load("vanilla"),
                    stop=StopAfter(3), stack_seeds=seeds)
    runner.train()
    assert all((run.dir / CHECKPOINT).is_file() for run in runner.runs)
    return [run.dir for run in runner.runs]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


# Links ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [LOCK, RUN_JSON, CHECKPOINT, TENSORBOARD])
def test_a_link_in_a_run_folder_is_refused_and_its_target_unchanged(tmp_path, capsys, name):
    (run_dir,) = interrupted(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("precious data")
    target = outside if name == TENSORBOARD else outside / "precious"
    victim = run_dir / name
    shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
    victim.symlink_to(target)
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 2
    assert "symbolic link" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert (outside / "precious").read_text() == "precious data"


@pytest.mark.parametrize("name", [LOCK, PLAN])
def test_a_link_in_a_comparison_folder_is_refused_and_its_target_unchanged(tmp_path, capsys, name):
    assert main(["compare", "--arch", "vanilla", "--seeds", "1", "--steps", "4", "--no-eval", "--sample-every", "0",
                 "--timing-rounds", "0", "--jobs", "1", "--out", str(tmp_path / "runs")]) == 0
    (plan,) = (tmp_path / "runs").iterdir()
    precious = tmp_path / "precious"
    precious.write_bytes((plan / name).read_bytes() if name == PLAN else b"precious data")
    before = precious.read_bytes()
    (plan / name).unlink()
    (plan / name).symlink_to(precious)
    capsys.readouterr()
    assert main(["compare", "--resume", str(plan)]) == 2
    assert "symbolic link" in one_line(capsys.readouterr().err)
    assert precious.read_bytes() == before


def test_a_report_whose_out_is_a_link_is_refused_before_any_figure(tmp_path, capsys):
    (run_dir,) = interrupted(tmp_path)
    precious = tmp_path / "precious.md"
    precious.write_text("precious data")
    out = tmp_path / "report"
    out.mkdir()
    (out / "README.md").symlink_to(precious)
    capsys.readouterr()
    assert main(["report", str(run_dir), "--out", str(out / "README.md")]) == 2
    assert "symbolic link" in one_line(capsys.readouterr().err)
    assert precious.read_text() == "precious data" and [p.name for p in out.iterdir()] == ["README.md"]


def test_a_stack_member_named_outside_its_folder_is_refused(tmp_path, capsys):
    first, second = interrupted(tmp_path, seeds=[0, 1])
    record = json.loads((first / RUN_JSON).read_text())
    record["stack"]["runs"][1] = "../../elsewhere"
    (first / RUN_JSON).write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["run", "--resume", str(first)]) == 2
    assert "outside the folder" in one_line(capsys.readouterr().err)


# Live processes and killed ones -----------------------------------------------------------------


def test_resume_leaves_a_run_folder_that_a_live_process_holds_and_names_it(tmp_path, capsys):
    assert main(["compare", "--arch", "vanilla", "--seeds", "2", "--steps", "12", "--no-eval", "--sample-every", "0",
                 "--timing-rounds", "0", "--jobs", "1", "--threads", "1", "--out", str(tmp_path)],
                stop=StopAfter(3)) == 128 + signal.SIGINT
    (plan,) = tmp_path.iterdir()
    held = next(p for p in plan.iterdir() if (p / RUN_JSON).is_file())
    (held / CHECKPOINT).unlink()  # no checkpoint: an unguarded resume would remove the folder to start afresh
    before = sorted(p.name for p in held.iterdir())
    capsys.readouterr()
    with folder_lock(held, "training vanilla seed 0"):
        assert main(["compare", "--resume", str(plan)]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(held) in err and "in use by process" in err and "wait for it to end, or stop it" in err
    assert sorted(p.name for p in held.iterdir()) == before


def _compare(out: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "bench", "compare", "--arch", "vanilla", "--seeds", "2", *args,
                             "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _training(out: Path, n: int, timeout: float = 180) -> dict[Path, int]:
    """Wait until ``n`` run folders under ``out`` are held by processes that train; return their pids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = {}
        for run_dir in out.glob("compare-*/vanilla-*"):
            holder = lock_holder(run_dir) if (run_dir / RUN_JSON).is_file() else None
            if holder:
                held[run_dir] = int(re.match(r"process (\d+)", holder).group(1))
        if len(held) >= n:
            return held
        time.sleep(0.05)
    raise AssertionError(f"{n} runs did not start training under {out}")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie that nobody has reaped yet has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_child_is_marked_interrupted_and_resume_completes_it(tmp_path):
    parent = _compare(tmp_path, *LONG, "--jobs", "2")
    held = _training(tmp_path, 2)
    victim, pid = next(iter(held.items()))
    os.kill(pid, signal.SIGKILL)
    _, err = parent.communicate(timeout=300)
    assert parent.returncode == 1, err
    assert "killed by SIGKILL" in err and "--resume" in err
    (plan,) = tmp_path.glob("compare-*")
    entries = json.loads((plan / PLAN).read_text())["runs"]
    killed = next(e for e in entries if plan / e["run_dir"] == victim)
    assert killed["status"] == "interrupted" and "SIGKILL" in killed["error"]
    assert read_record(victim).status is Status.INTERRUPTED and read_record(victim).stop_signal == "SIGKILL"
    assert main(["compare", "--resume", str(plan), "--jobs", "1"]) == 0
    assert [e["status"] for e in json.loads((plan / PLAN).read_text())["runs"]] == ["completed"] * 2


def test_children_of_a_killed_parent_stop_within_seconds_and_resume_completes_them_bit_exact(tmp_path):
    assert main(["compare", "--arch", "vanilla", "--seeds", "2", *LONG, "--jobs", "1",
                 "--out", str(tmp_path / "whole")]) == 0
    parent = _compare(tmp_path / "cut", *LONG, "--jobs", "2")
    held = _training(tmp_path / "cut", 2)
    os.kill(parent.pid, signal.SIGKILL)
    parent.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while any(map(_alive, held.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, held.values())), "children still run 10 s after their parent was killed"
    (plan,) = (tmp_path / "cut").glob("compare-*")
    logs = " ".join(p.read_text() for p in (plan / "logs").iterdir())
    assert "has gone" in logs and "Traceback" not in logs
    assert all(read_record(d).status is Status.INTERRUPTED and (d / CHECKPOINT).is_file() for d in held)
    assert main(["compare", "--resume", str(plan), "--jobs", "1"]) == 0
    (whole,) = (tmp_path / "whole").glob("compare-*")
    for name in ("vanilla-", ):
        cut = sorted(plan.glob(f"{name}*"), key=lambda d: read_record(d).seed)
        ref = sorted(whole.glob(f"{name}*"), key=lambda d: read_record(d).seed)
        for a, b in zip(cut, ref, strict=True):
            ra, rb = read_record(a), read_record(b)
            assert ra.status is rb.status is Status.COMPLETED and ra.steps == rb.steps
            assert (a / "losses.csv").read_text() == (b / "losses.csv").read_text()
            ga, gb = (torch.load(d / "generator.pt", weights_only=True) for d in (a, b))
            assert all(torch.equal(ga[k], gb[k]) for k in ga)


def test_a_run_killed_before_its_first_checkpoint_gets_a_final_status_and_resume_says_start_again(tmp_path, capsys):
    (run_dir,) = interrupted(tmp_path)
    (run_dir / CHECKPOINT).unlink()
    record = json.loads((run_dir / RUN_JSON).read_text())
    (run_dir / RUN_JSON).write_text(json.dumps({**record, "status": "running", "stop_signal": None}))
    (loaded,) = load_runs([run_dir])
    assert loaded.status == "interrupted"  # nobody holds the folder: its process is gone
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 2
    err = one_line(capsys.readouterr().err)
    assert "before its first checkpoint" in err and "start it again with: python -m bench run --arch vanilla" in err
    assert read_record(run_dir).status is Status.INTERRUPTED


def test_a_closed_pipe_does_not_turn_a_completed_run_into_a_failure(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "bench", "run", "--arch", "vanilla", "--steps", "8",
                                "--no-eval", "--sample-every", "0", "--out", str(tmp_path)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head -1` does once it has its line
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    (run_dir,) = tmp_path.iterdir()
    assert read_record(run_dir).status is Status.COMPLETED


# Damaged checkpoints and stacks ----------------------------------------------------------------


def test_one_flipped_byte_in_a_checkpoint_is_refused_by_name(tmp_path, capsys):
    (run_dir,) = interrupted(tmp_path)
    flip_byte(run_dir / CHECKPOINT)
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir)]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(run_dir / CHECKPOINT) in err and "is damaged" in err and "SHA-256" in err


@pytest.mark.parametrize("damage", ["missing", "flipped"])
def test_a_damaged_seed_of_a_stack_is_named_and_the_others_can_always_be_finished(tmp_path, capsys, damage):
    dirs = interrupted(tmp_path, seeds=[0, 1, 2])
    if damage == "missing":
        shutil.rmtree(dirs[1])
    else:
        flip_byte(dirs[1] / CHECKPOINT)
    capsys.readouterr()
    assert main(["run", "--resume", str(dirs[0])]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(dirs[1]) in err and "seed 1" in err and "--skip-damaged" in err
    assert main(["run", "--resume", str(dirs[0]), "--skip-damaged"]) == 0
    assert [read_record(d).status for d in (dirs[0], dirs[2])] == [Status.COMPLETED] * 2
    if damage == "flipped":
        assert read_record(dirs[1]).status is Status.FAILED and (dirs[1] / DAMAGED).is_file()
        assert not (dirs[1] / CHECKPOINT).exists()


def test_a_comparison_with_a_damaged_checkpoint_is_refused_then_finished_without_it_then_retried(tmp_path, capsys):
    args = ["compare", "--arch", "vanilla", "--seeds", "2", "--steps", "12", "--no-eval", "--sample-every", "0",
            "--timing-rounds", "0", "--jobs", "1", "--threads", "1", "--out", str(tmp_path)]
    assert main(args, stop=StopAfter(3)) == 128 + signal.SIGINT
    (plan,) = tmp_path.iterdir()
    damaged = next(p for p in plan.iterdir() if (p / CHECKPOINT).is_file())
    flip_byte(damaged / CHECKPOINT, at=0.3)
    capsys.readouterr()
    assert main(["compare", "--resume", str(plan)]) == 2
    assert str(damaged / CHECKPOINT) in one_line(capsys.readouterr().err)
    assert main(["compare", "--resume", str(plan), "--skip-damaged"]) == 1
    statuses = sorted(e["status"] for e in json.loads((plan / PLAN).read_text())["runs"])
    assert statuses == ["completed", "failed"] and "--retry-failed" in capsys.readouterr().err
    assert main(["compare", "--resume", str(plan), "--retry-failed"]) == 0
    assert [e["status"] for e in json.loads((plan / PLAN).read_text())["runs"]] == ["completed"] * 2


@pytest.mark.parametrize("args, message", [
    (["run", "--arch", "vanilla", "--steps", "2000001"], "--steps must be at most 2,000,000"),
    (["run", "--arch", "vanilla", "--epochs", "2001"], "--epochs must be at most 2,000"),
    (["run", "--arch", "vanilla", "--time-budget", "169h"], "--time-budget must be at most 168h"),
    (["run", "--arch", "vanilla", "--skip-damaged"], "--skip-damaged goes with --resume"),
    (["compare", "--arch", "vanilla", "--retry-failed"], "--retry-failed goes with --resume"),
])
def test_budgets_have_upper_bounds_and_resume_options_need_resume(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert not any(tmp_path.iterdir())
