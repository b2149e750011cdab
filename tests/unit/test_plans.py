"""The plan model and the one driver, with a fake backend: no training."""

from __future__ import annotations

from dataclasses import replace

import importlib
import json
import shutil
import signal
from pathlib import Path

import pytest

from bench.config import PlanSettings
from bench.errors import UsageError
from bench.layout import PLAN, Status
from bench.plans.driver import Driver
from bench.plans.plan import Outcome, Plan, PlanKind

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
SETTINGS = {"steps": 10, "eval": False, "hparams": {}}


class FakeBackend:
    """Plays each submitted run at once: ``script[(arch, seed)]`` lists the statuses of its attempts."""

    live = False

    def __init__(self, script: dict[tuple[str, int], list[Status]] | None = None, stop_after: int | None = None):
        self.script = script or {}
        self.queue: list[tuple[int, int]] = []
        self.started: list[tuple[str, int, int]] = []
        self.stop_after = stop_after

    def describe(self) -> str:
        return "in a test"

    def check(self, settings): pass

    def start(self): pass

    def stop(self): pass

    def submit(self, driver, index, attempt):
        self.queue.append((index, attempt))

    def run(self, driver):
        while self.queue and not driver.stop.requested:
            index, attempt = self.queue.pop(0)
            entry = driver.entries[index]
            run_dir = driver.plan.folder / f"{entry.arch}-s{entry.seed}"
            run_dir.mkdir(exist_ok=True)
            driver.started(index, attempt, str(run_dir), None)
            self.started.append((entry.arch, entry.seed, attempt))
            status = self.script.get((entry.arch, entry.seed), [Status.COMPLETED])[attempt - 1]
            if self.stop_after is not None and len(self.started) >= self.stop_after:
                driver.stop.request(signal.SIGTERM)
                status = Status.INTERRUPTED
            driver.finished(index, attempt, Outcome(status, str(run_dir), "boom" if status is Status.FAILED else None))


def make_plan(tmp_path, archs=("a", "b"), seeds=(0, 1), kind=PlanKind.COMPARE, **kw) -> Plan:
    return Plan.create(tmp_path, kind, list(archs), list(seeds), PlanSettings(**SETTINGS), **kw)


def test_a_plan_has_one_entry_per_arch_point_and_seed_and_saves_the_command(tmp_path):
    plan = make_plan(tmp_path, kind=PlanKind.SWEEP, points={"a": [{"lr": 1}, {"lr": 2}], "b": [{}]},
                     command=["sweep", "--arch", "a,b", "--out", "x y"])
    assert plan.folder.name.startswith("sweep-")
    assert [(e.arch, e.hparams, e.seed) for e in plan.runs] == [
        ("a", {"lr": 1}, 0), ("a", {"lr": 1}, 1), ("a", {"lr": 2}, 0), ("a", {"lr": 2}, 1), ("b", {}, 0), ("b", {}, 1)]
    again = Plan.load(plan.folder)
    assert again.runs == plan.runs and again.kind is PlanKind.SWEEP
    assert again.command_text() == "python -m bench sweep --arch a,b --out 'x y'"


def test_run_folders_are_stored_relative_so_a_moved_plan_finds_them(tmp_path):
    plan = make_plan(tmp_path / "here")
    run = plan.folder / "a-s0"
    run.mkdir()
    plan.set_run_dir(plan.runs[0], run)
    plan.save()
    assert json.loads((plan.folder / PLAN).read_text())["runs"][0]["run_dir"] == "a-s0"
    moved = shutil.move(str(plan.folder), str(tmp_path / "there"))
    assert Plan.load(moved).run_path(Plan.load(moved).runs[0]) == Path(moved) / "a-s0"


def test_plans_of_the_previous_release_load_with_their_commands_rebuilt(tmp_path):
    folder = shutil.copytree(LEGACY / "compare-20261130T084225Z", tmp_path / "copy")
    plan = Plan.load(folder)
    assert plan.kind is PlanKind.COMPARE and plan.command is None
    assert plan.command_text() == ("python -m bench compare --arch vanilla,wgan --seeds 2 --steps 20 --threads 1 "
                                   "--eval-samples 200 --log-every 10")
    # Its run folders are absolute paths into /tmp; a copied plan uses its own copies.
    assert Path(plan.runs[0].run_dir).is_absolute() and plan.run_path(plan.runs[0]).parent == Path(folder)
    sweep = Plan.load(LEGACY / "sweep-20261130T084233Z")
    assert sweep.kind is PlanKind.SWEEP and sweep.command_text().endswith("--grid lr=1e-4,2e-4")


@pytest.mark.parametrize("change, expected", [
    (lambda p: p.pop("runs"), "missing runs"),
    (lambda p: p["runs"][0].update(seed="0"), "runs[0].seed is a string, expected an integer"),
    (lambda p: p["runs"][0].update(status="done"), "runs[0].status is 'done', expected one of"),
    (lambda p: p["settings"].update(stepz=3), "unknown settings: stepz"),
    (lambda p: p["settings"].update(steps="3"), "settings.steps is a string"),
    (lambda p: p.update(seeds={}), "seeds is an object, expected a list"),
])
def test_a_damaged_plan_is_refused_naming_the_key(tmp_path, change, expected):
    plan = make_plan(tmp_path)
    data = json.loads((plan.folder / PLAN).read_text())
    change(data)
    (plan.folder / PLAN).write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"compare\.json is damaged") as info:
        Plan.load(plan.folder)
    assert expected in str(info.value)
    (plan.folder / PLAN).write_text("{nope")
    with pytest.raises(UsageError, match="is damaged"):
        Plan.load(plan.folder)


def test_driver_runs_every_entry_and_records_where(tmp_path):
    plan = make_plan(tmp_path)
    backend = FakeBackend()
    assert Driver(plan, backend).run() == 0
    saved = Plan.load(plan.folder)
    assert [e.status for e in saved.runs] == [Status.COMPLETED] * 4
    assert [e.run_dir for e in saved.runs] == ["a-s0", "a-s1", "b-s0", "b-s1"] and all(
        e.attempts == 1 for e in saved.runs
    )


def test_failures_are_retried_then_recorded_without_stopping_the_rest(tmp_path):
    plan = make_plan(tmp_path)
    backend = FakeBackend({("a", 1): [Status.FAILED, Status.COMPLETED], ("b", 0): [Status.FAILED, Status.FAILED]})
    assert Driver(plan, backend, retries=1).run() == 1
    saved = {(e.arch, e.seed): (e.status, e.attempts, e.error) for e in Plan.load(plan.folder).runs}
    assert saved == {("a", 0): (Status.COMPLETED, 1, None), ("a", 1): (Status.COMPLETED, 2, None),
                     ("b", 0): (Status.FAILED, 2, "boom"), ("b", 1): (Status.COMPLETED, 1, None)}
    again = FakeBackend()
    assert Driver(Plan.load(plan.folder), again, retries=0).run() == 1  # failed runs stay failed
    assert again.started == []


def test_a_stop_request_ends_the_plan_and_resume_runs_only_what_is_left(tmp_path):
    plan = make_plan(tmp_path)
    assert Driver(plan, FakeBackend(stop_after=2)).run() == 128 + signal.SIGTERM
    saved = Plan.load(plan.folder)
    assert [e.status for e in saved.runs] == [Status.COMPLETED, Status.INTERRUPTED, Status.QUEUED, Status.QUEUED]
    backend = FakeBackend()
    assert Driver(saved, backend).run() == 0
    assert backend.started == [("a", 1, 1), ("b", 0, 1), ("b", 1, 1)]


def test_resume_adopts_a_finished_run_the_plan_missed_and_clears_a_broken_one(tmp_path):
    plan = make_plan(tmp_path, archs=("vanilla",))
    legacy = next((LEGACY / "compare-20261130T084225Z").glob("vanilla-*-s0"))
    finished = shutil.copytree(legacy, plan.folder / "vanilla-s0")
    broken = plan.folder / "vanilla-s1"
    broken.mkdir()
    (broken / "run.json").write_text("{cut")
    for entry, path in zip(plan.runs, (finished, broken), strict=True):
        entry.status = Status.RUNNING
        plan.set_run_dir(entry, path)
    plan.save()
    backend = FakeBackend()
    assert Driver(Plan.load(plan.folder), backend).run() == 0
    assert backend.started == [("vanilla", 1, 1)]  # seed 0 was adopted, not run again
    assert not (broken / "run.json").exists()  # the broken folder was removed before the rerun


def test_step_times_round_trip_and_flag_a_wide_spread(tmp_path):
    from bench.plans.steptimes import ArchStepTimes, StepTimes

    steady = ArchStepTimes(batch_size=64, times_ms=[10.0, 10.5, 10.2, 9.9] * 5, round_medians_ms=[10.1, 10.2])
    noisy = ArchStepTimes(batch_size=64, times_ms=[10.0, 30.0] * 10, round_medians_ms=[10.0, 30.0])
    times = StepTimes(created="now", device="cpu", threads=1, precision="fp32", rounds=2, steps_per_round=10,
                      warmup_steps=3, archs={"a": steady, "b": noisy})
    assert StepTimes.load(tmp_path) is None
    times.save(tmp_path)
    again = StepTimes.load(tmp_path)
    assert again == times and not again.archs["a"].wide and again.archs["b"].wide
    assert again.archs["a"].stats.median == pytest.approx(10.1, abs=0.2)
    (tmp_path / "step_times.json").write_text('{"archs": 3}')
    with pytest.raises(UsageError, match="step_times.json is damaged"):
        StepTimes.load(tmp_path)


def test_a_schedules_own_rhythm_is_not_a_wide_spread():
    from bench.plans.steptimes import ArchStepTimes

    wgan_like = ArchStepTimes(batch_size=64, times_ms=[10.0, 10.0, 10.0, 10.0, 25.0] * 8,
                              round_medians_ms=[10.0, 10.1, 9.9])  # a generator step on every 5th batch
    assert wgan_like.stats.spread > 2 and not wgan_like.wide


def test_block_spread_sees_the_load_through_a_schedules_rhythm():
    from bench.timing import block_spread

    rhythm = [10.0, 10.0, 10.0, 10.0, 25.0] * 20
    assert block_spread(rhythm) == pytest.approx(1.0)
    assert block_spread(rhythm[:50] + [3 * t for t in rhythm[50:]]) > 2.5


def test_a_ray_worker_shares_evaluators_only_between_plans_that_evaluate_alike():
    from bench.plans.backends import worker_evaluators

    base = PlanSettings(eval=True, device="cpu", eval_samples=500, data_dir=None)
    assert worker_evaluators(base) is worker_evaluators(replace(base, stack=True))  # not an evaluation setting
    assert worker_evaluators(base) is not worker_evaluators(replace(base, eval_scale=32))


# Settings checked once, where they enter ---------------------------------------------------------------


@pytest.mark.parametrize("argv", [["compare", "--arch", "vanilla,lsgan", "--seeds", "2"],
                                  ["run", "--arch", "vanilla", "--seeds", "2"]])
def test_a_new_comparison_checks_its_settings_once_before_it_trains(argv, tmp_path, monkeypatch):
    """compare and its alias run --seeds: the command line's settings are checked where they enter, and
    neither the plan's checks nor the comparison check them again."""
    import bench.config
    from bench.cli import build_parser
    from bench.stop import StopRequest

    checks = []
    validate = bench.config.RunConfig.validate
    monkeypatch.setattr(bench.config.RunConfig, "validate", lambda cfg: (checks.append(cfg), validate(cfg))[1])

    class Trained(Exception):
        pass

    def comparison(plan, *args, **kwargs):
        assert len(checks) == 1 and plan.settings.steps == 3
        raise Trained

    command = argv[0]
    module = importlib.import_module(f"bench.cli.{command}")
    monkeypatch.setattr(module, "run_comparison", comparison)
    args = build_parser(command).parse_args([*argv, "--steps", "3", "--out", str(tmp_path), "--no-eval"])
    args.stop, args.argv = StopRequest(), argv
    with pytest.raises(Trained):
        args.func(args)


def test_a_plan_resumed_from_an_edited_file_is_checked_as_the_command_line_is(tmp_path):
    from bench.plans.execute import load_plan

    plan = make_plan(tmp_path, archs=("vanilla",))
    data = json.loads((plan.folder / PLAN).read_text())
    data["settings"]["steps"] = 0
    (plan.folder / PLAN).write_text(json.dumps(data))
    with pytest.raises(UsageError, match=rf"{PLAN}: --steps must be a positive number, got 0"):
        load_plan(str(plan.folder))
