"""bench compare: one protocol, every (arch, seed), a plan that survives interruption."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from bench.config import PlanSettings
from bench.layout import PLAN
from bench.plans.backends import LocalBackend
from bench.plans.driver import Driver
from bench.plans.plan import Plan, PlanKind

from helpers import REPO, run_cli

#: One run at a time, in this process: what these tests look at (folders, order) does not depend on the load.
SMALL = ["--steps", "30", "--log-every", "10", "--sample-every", "0", "--eval-every", "15", "--eval-samples", "500",
         "--jobs", "1"]


def test_compare_then_report_end_to_end(tmp_path):
    proc = run_cli("compare", "--arch", "vanilla,wgan", "--seeds", "2", *SMALL, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("compare-")
    plan = json.loads((folder / PLAN).read_text())
    assert [(r["arch"], r["seed"], r["status"]) for r in plan["runs"]] == [
        ("vanilla", 0, "completed"), ("vanilla", 1, "completed"), ("wgan", 0, "completed"), ("wgan", 1, "completed")]
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert len(runs) == 4 and all((p / "tb").is_dir() for p in runs)
    record = json.loads((runs[0] / "run.json").read_text())
    assert [e["step"] for e in record["evaluations"]] == [15, 30]
    assert record["metrics"]["protocol"]["n_generated"] == 500
    assert "vanilla" in proc.stdout and "wgan" in proc.stdout and "reference train vs test" in proc.stdout

    report = run_cli("report", str(folder), "--format", "csv")
    assert report.returncode == 0, report.stderr
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert sorted(r["arch"] for r in rows) == ["vanilla", "wgan"]


SETTINGS = PlanSettings(steps=12, log_every=4, sample_every=0, eval=False, batch_size=16)


def run_plan(folder: Path) -> int:
    return Driver(Plan.load(folder), LocalBackend()).run()


def test_resume_skips_finished_runs(tmp_path):
    comparison = Plan.create(tmp_path, PlanKind.COMPARE, ["vanilla"], [0, 1], SETTINGS)
    plan = json.loads((comparison.folder / PLAN).read_text())
    plan["runs"][0]["status"] = "completed"  # as if it had finished before an interruption
    (comparison.folder / PLAN).write_text(json.dumps(plan))
    assert run_plan(comparison.folder) == 0
    plan = json.loads((comparison.folder / PLAN).read_text())
    assert [r["status"] for r in plan["runs"]] == ["completed", "completed"]
    assert plan["runs"][0]["run_dir"] is None  # never started again
    assert len([p for p in comparison.folder.iterdir() if p.is_dir()]) == 1


def test_two_compare_processes_on_one_folder_do_not_clobber(tmp_path):
    args = [sys.executable, "-m", "bench", "compare", "--arch", "vanilla", "--steps", "5", "--no-eval", "--jobs", "1",
            "--sample-every", "0", "--out", str(tmp_path)]
    procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    folders = sorted(tmp_path.iterdir())
    assert len(folders) == 2
    for folder in folders:
        plan = json.loads((folder / PLAN).read_text())
        assert [r["status"] for r in plan["runs"]] == ["completed"]
        assert len([p for p in folder.iterdir() if p.is_dir()]) == 1


def test_resume_adopts_a_finished_run_the_plan_never_heard_of_and_restarts_a_broken_one(tmp_path):
    comparison = Plan.create(tmp_path, PlanKind.COMPARE, ["vanilla"], [0, 1], SETTINGS)
    assert run_plan(comparison.folder) == 0
    plan = json.loads((comparison.folder / PLAN).read_text())
    finished, broken = (comparison.folder / r["run_dir"] for r in plan["runs"])
    # As if the process had died after run 0 finished (before the plan heard) and during run 1.
    for entry in plan["runs"]:
        entry["status"] = "running"
    (broken / "run.json").write_text("{damaged")
    (comparison.folder / PLAN).write_text(json.dumps(plan))

    assert run_plan(comparison.folder) == 0
    plan = json.loads((comparison.folder / PLAN).read_text())
    assert [r["status"] for r in plan["runs"]] == ["completed", "completed"]
    assert comparison.folder / plan["runs"][0]["run_dir"] == finished  # adopted, not trained again
    # The damaged folder was removed and the run trained afresh (its new folder may reuse the name).
    rerun = json.loads((comparison.folder / plan["runs"][1]["run_dir"] / "run.json").read_text())
    assert rerun["status"] == "completed" and rerun["steps"] == 12
    assert len([p for p in comparison.folder.iterdir() if p.is_dir()]) == 2


def test_a_comparison_of_28x28_and_32x32_architectures_is_one_table_on_the_32x32_scale(tmp_path):
    from bench.cli import main
    from bench.report.aggregate import group_runs, load_runs
    from bench.report.render import render

    args = ["compare", "--arch", "vanilla,dcgan", "--seeds", "2", "--steps", "6", "--log-every", "3", "--sample-every",
            "0", "--eval-samples", "300", "--train-subset", "2000", "--threads", "1", "--timing-rounds", "0",
            "--jobs", "1", "--out", str(tmp_path / "runs")]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "evaluating every architecture at the 32x32 scale (--eval-scale 32): vanilla images are brought" \
        in proc.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    (group,) = group_runs(load_runs([folder]))
    assert sorted(row.arch for row in group.rows) == ["dcgan", "vanilla"] and len(group.pairs) == 1
    assert all(run.record.metrics.protocol["real_image_size"] == 32 for run in group.runs)
    assert "· scored at 32x32 ·" in render([group], "md") and "scored at 32x32" in proc.stdout
    # A vanilla run re-scored on the 28 scale from its generator.pt: an FID of another scale.
    vanilla = next(run.path for run in group.runs if run.arch == "vanilla")
    assert main(["eval", str(vanilla), "--eval-scale", "28", "--eval-samples", "300", "--device", "cpu",
                 "--out", str(tmp_path / "at28.json")]) == 0
    at_28 = json.loads((tmp_path / "at28.json").read_text())["metrics"]
    assert "real_image_size" not in at_28["protocol"]
    at_32 = next(run.record.metrics for run in group.runs if run.path == vanilla)
    assert at_28["fid"] != at_32.fid
    dcgan = next(run.path for run in group.runs if run.arch == "dcgan")
    assert main(["eval", str(dcgan), "--eval-scale", "28"]) == 2  # a 32x32 generator is never brought down
