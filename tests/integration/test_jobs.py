"""Several runs at once (--jobs): separate processes, the same run folders, a stop that reaches them all;
and the side-by-side step timing of a comparison."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import torch

from bench.config import PlanSettings
from bench.cli import main
from bench.layout import CHECKPOINT, GENERATOR, PLAN
from bench.plans.sidebyside import time_side_by_side
from bench.plans.steptimes import StepTimes
from bench.stop import StopRequest

from helpers import GOOD_MODULE, make_dist

SMALL = ["--steps", "12", "--log-every", "4", "--sample-every", "0", "--threads", "1", "--no-eval",
         "--timing-rounds", "0"]


def plan_of(folder: Path) -> dict:
    return json.loads((folder / PLAN).read_text())


def the_plan(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.name.startswith("compare-")]
    return folder


def runs_of(folder: Path) -> dict[tuple[str, int], Path]:
    return {(r["arch"], r["seed"]): folder / r["run_dir"] for r in plan_of(folder)["runs"]}


def assert_same_run(a: Path, b: Path) -> None:
    ra, rb = (json.loads((p / "run.json").read_text()) for p in (a, b))
    for key in ("status", "steps", "images_seen", "losses", "discriminator", "params"):
        assert ra[key] == rb[key], key
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert (a / "losses.csv").read_text() == (b / "losses.csv").read_text()
    ga, gb = (torch.load(p / GENERATOR, weights_only=True) for p in (a, b))
    assert all(torch.equal(ga[k], gb[k]) for k in ga)


def test_jobs_train_runs_side_by_side_and_write_what_one_after_another_writes(tmp_path):
    args = ["compare", "--arch", "vanilla", "--seeds", "2", *SMALL]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = the_plan(tmp_path / "one"), the_plan(tmp_path / "two")
    assert [r["status"] for r in plan_of(two)["runs"]] == ["completed"] * 2
    for point, run_dir in runs_of(one).items():
        assert_same_run(run_dir, runs_of(two)[point])
        shared = json.loads((runs_of(two)[point] / "run.json").read_text())["config"]["parallel_runs"]
        assert shared == 2 and "parallel_runs" not in json.loads((run_dir / "run.json").read_text())["config"]
    logs = sorted(p.name for p in (two / "logs").iterdir())
    assert logs == sorted(f"{p.name}.log" for p in runs_of(two).values())  # each run's output, apart


class StopLater(StopRequest):
    """A stop request made ``seconds`` after it was created, as a SIGTERM then would."""

    def __init__(self, seconds: float):
        super().__init__()
        self.at = time.monotonic() + seconds

    @property
    def requested(self) -> bool:
        if time.monotonic() >= self.at:
            self.request(signal.SIGTERM)
        return self.signal is not None


def test_a_stop_checkpoints_every_running_run_and_resume_completes_them(tmp_path):
    args = ["compare", "--arch", "vanilla", "--seeds", "2", *SMALL, "--steps", "60"]
    # Both runs' processes start at once; they are still starting or training when the stop comes.
    assert main([*args, "--jobs", "2", "--out", str(tmp_path)], stop=StopLater(1.0)) == 128 + signal.SIGTERM
    folder = the_plan(tmp_path)
    plan = plan_of(folder)
    assert [r["status"] for r in plan["runs"]] == ["interrupted", "interrupted"]
    assert all((run_dir / CHECKPOINT).is_file() for run_dir in runs_of(folder).values())
    assert main(["compare", "--resume", str(folder), "--jobs", "2"]) == 0
    assert [r["status"] for r in plan_of(folder)["runs"]] == ["completed", "completed"]
    assert all(json.loads((d / "run.json").read_text())["steps"] == 60 for d in runs_of(folder).values())


FAILING = GOOD_MODULE.replace("    def train_step(self, real, step):\n",
                              "    def train_step(self, real, step):\n        raise RuntimeError('broken step')\n")


def test_a_failing_run_does_not_stop_the_others(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    make_dist(plugins, "jobs-test-plugin", {"broken": "jobs_broken_arch:SPEC"},
              {"jobs_broken_arch": FAILING.replace("{name}", "broken")})
    monkeypatch.syspath_prepend(str(plugins))
    from bench.registry import default_registry

    default_registry.cache_clear()
    try:
        status = main(["compare", "--arch", "broken,vanilla", "--seeds", "1", *SMALL, "--jobs", "2",
                       "--out", str(tmp_path / "out")])
    finally:
        default_registry.cache_clear()
    assert status != 0
    runs = {r["arch"]: r for r in plan_of(the_plan(tmp_path / "out"))["runs"]}
    assert runs["vanilla"]["status"] == "completed" and runs["broken"]["status"] == "failed"


def test_run_seeds_is_a_comparison_of_one_architecture(tmp_path):
    assert main(["run", "--arch", "vanilla", "--seeds", "2", *SMALL[:-2], "--jobs", "1", "--out", str(tmp_path)]) == 0
    folder = the_plan(tmp_path)
    assert [(r["arch"], r["seed"], r["status"]) for r in plan_of(folder)["runs"]] == [
        ("vanilla", 0, "completed"), ("vanilla", 1, "completed")]


def test_identical_networks_time_alike_side_by_side():
    """vanilla and lsgan: the same networks and FLOPs, one loss apart; alternating rounds give them the same time."""
    times = time_side_by_side(PlanSettings(device="cpu", threads=1, batch_size=64), ["vanilla", "lsgan"], rounds=4,
                              steps=15, warmup=3)
    a, b = (times.archs[name].stats for name in ("vanilla", "lsgan"))
    assert a.p10 <= b.p90 and b.p10 <= a.p90, (a, b)  # within each other's measured spread
    assert times.threads == 1 and len(times.archs["vanilla"].round_medians_ms) == 4


def test_compare_times_its_architectures_once(tmp_path):
    args = ["compare", "--arch", "vanilla,lsgan", *SMALL[:-2], "--timing-rounds", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    folder = the_plan(tmp_path)
    times = StepTimes.load(folder)
    assert times is not None and set(times.archs) == {"vanilla", "lsgan"} and times.rounds == 1
    stamp = os.stat(folder / "step_times.json").st_mtime_ns
    assert main(["compare", "--resume", str(folder)]) == 0
    assert os.stat(folder / "step_times.json").st_mtime_ns == stamp  # not timed again


def test_the_default_parallelism_is_measured_and_recorded_in_every_run(tmp_path, capsys):
    assert main(["compare", "--arch", "vanilla", "--seeds", "2", "--steps", "6", "--log-every", "3", "--sample-every",
                 "0", "--no-eval", "--timing-rounds", "0", "--out", str(tmp_path)]) == 0
    folder = the_plan(tmp_path)
    why = {json.loads((d / "run.json").read_text())["config"].get("parallelism") for d in runs_of(folder).values()}
    assert len(why) == 1
    (why,) = why
    # Six steps never pay for a second process, however many CPUs are free.
    assert why.startswith("one at a time with "), why
    assert why in capsys.readouterr().err  # the plan's first line says it too
