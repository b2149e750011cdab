"""bench sweep: grids, the local backend, resume, and the same sweep on a local Ray instance."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.errors import UsageError
from bench.layout import PLAN
from bench.plans.backends import import_ray
from bench.plans.grid import grid_points, make_grid, read_grid_file
from bench.registry import default_registry

from helpers import GOOD_MODULE, StopAfter, make_dist

#: Short, deterministic runs: one torch thread everywhere, so every backend computes alike.
SMALL = ["--steps", "16", "--log-every", "4", "--sample-every", "0", "--threads", "1"]


def sweep_folder(out: Path) -> Path:
    (folder,) = [p for p in out.iterdir() if p.name.startswith("sweep-")]
    return folder


def plan_of(folder: Path) -> dict:
    return json.loads((folder / PLAN).read_text())


def runs_by_point(folder: Path) -> dict[tuple, Path]:
    """The run folder of every planned (arch, seed, hyperparameters)."""
    return {(r["arch"], r["seed"], json.dumps(r["hparams"], sort_keys=True)): folder / r["run_dir"]
            for r in plan_of(folder)["runs"]}


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same result: record, losses, metrics and generator weights (timings aside)."""
    ra, rb = (json.loads((p / "run.json").read_text()) for p in (a, b))
    for key in ("arch", "status", "steps", "images_seen", "losses", "discriminator", "flops_per_step", "params"):
        assert ra[key] == rb[key], key
    for key in ("seed", "hparams", "budget", "batch_size"):
        assert ra["config"][key] == rb["config"][key], key
    untimed = lambda m: m and {k: v for k, v in m.items() if k != "eval_s"}  # noqa: E731
    assert untimed(ra["metrics"]) == untimed(rb["metrics"])
    assert [untimed(e) | {"train_wall_s": 0, "train_cpu_s": 0} for e in ra["evaluations"]] == [
        untimed(e) | {"train_wall_s": 0, "train_cpu_s": 0} for e in rb["evaluations"]]
    assert (a / "losses.csv").read_text() == (b / "losses.csv").read_text()
    ga, gb = (torch.load(p / "generator.pt", weights_only=True) for p in (a, b))
    assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga)
    assert not (a / "checkpoint.pt").exists() and not (b / "checkpoint.pt").exists()


# The grid through the command line -------------------------------------------------------------


def test_unknown_grid_key_fails_in_one_line_before_anything_runs(tmp_path, capsys):
    status = main(["sweep", "--arch", "vanilla,wgan", "--grid", "n_critic=5,10", "--steps", "1",
                   "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "--grid key 'n_critic' is not a hyperparameter of vanilla; vanilla has: b1, b2, batch_size, bn_eps" in err
    assert not list(tmp_path.iterdir())  # no sweep folder
    with pytest.raises(UsageError, match="not a valid float"):
        grid_points("vanilla", default_registry().load("vanilla"), make_grid([("lr", ["fast"])], None), {})
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text("lr = [1e-4]\n")
    with pytest.raises(UsageError, match=r"no \[grid\] table"):
        read_grid_file(str(bad_file))


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    status = main(["sweep", "--arch", "vanilla", "--backend", "ray", "--steps", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "--backend ray needs Ray" in err
    assert not list(tmp_path.iterdir())
    with pytest.raises(UsageError, match=re.escape('install it with: pip install "gan-bench[ray]" (from a checkout')):
        import_ray()


def test_ray_options_are_refused_with_the_local_backend(tmp_path, capsys):
    status = main(["sweep", "--arch", "vanilla", "--cpus-per-run", "2", "--steps", "1", "--out", str(tmp_path)])
    assert status == 2 and "--cpus-per-run only apply to --backend ray" in capsys.readouterr().err


# The local backend ------------------------------------------------------------------------------


def test_local_sweep_resume_skips_finished_points_and_report_picks_the_best(tmp_path, capsys):
    args = ["sweep", "--arch", "vanilla", "--grid", "lr=1e-4,2e-4", *SMALL, "--eval-samples", "500", "--jobs", "1",
            "--out", str(tmp_path)]
    assert main(args) == 0
    folder = sweep_folder(tmp_path)
    plan = plan_of(folder)
    assert plan["kind"] == "sweep" and [(r["hparams"], r["status"], r["attempts"]) for r in plan["runs"]] == [
        ({"lr": 1e-4}, "completed", 1), ({"lr": 2e-4}, "completed", 1)]
    first, second = (folder / r["run_dir"] for r in plan["runs"])
    assert json.loads((second / "run.json").read_text())["config"]["hparams"]["lr"] == 2e-4
    capsys.readouterr()

    # As if this process had died: the first run finished but the plan never heard; the second was cut short.
    plan["runs"][0]["status"] = "running"
    plan["runs"][1]["status"] = "running"
    (second / "run.json").write_text(json.dumps({**json.loads((second / "run.json").read_text()), "status": "running"}))
    (folder / PLAN).write_text(json.dumps(plan))
    (second / "stale").touch()  # the replacement may reuse the folder's name within the same second
    kept = (first / "run.json").stat().st_mtime_ns
    assert main(["sweep", "--resume", str(folder), "--jobs", "1"]) == 0
    plan = plan_of(folder)
    assert [r["status"] for r in plan["runs"]] == ["completed", "completed"]
    assert folder / plan["runs"][0]["run_dir"] == first and (first / "run.json").stat().st_mtime_ns == kept
    # the stale one was replaced
    assert not (second / "stale").exists() and (folder / plan["runs"][1]["run_dir"]).is_dir()
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 2
    assert "2 runs, 1 to go" in capsys.readouterr().err

    # bench report on a sweep folder: one row per point, or the best point per architecture
    assert main(["report", str(folder), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [json.loads(r["hparams"])["lr"] for r in rows] == [1e-4, 2e-4]
    assert main(["report", str(folder), "--format", "csv", "--best"]) == 0
    (best,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert float(best["fid_mean"]) == min(float(r["fid_mean"]) for r in rows)
    assert main(["report", str(folder), "--format", "md"]) == 0
    md = capsys.readouterr().out
    # the command as typed, --out too, but without this machine's folders
    assert "python -m bench " + shlex.join([*args[:-1], f".../{Path(args[-1]).name}"]) in md and str(tmp_path) not in md


# Ray --------------------------------------------------------------------------------------------

FAILING = """
import os
from bench.contract import ArchSpec
from tiny_arch import Cfg, Tiny

def _log(what):
    with open(os.environ["SWEEP_TEST_LOG"], "a") as fh:
        fh.write(what + "\\n")

class Flaky(Tiny):
    def train_step(self, real, step):
        if step == 8:  # after the runner's FLOP count, which runs steps 0-4 on a copy
            _log("flaky")
            raise RuntimeError("flaky fails at step 8")
        return super().train_step(real, step)

def broken_build(cfg, device):
    _log("broken-build")
    raise ValueError("cannot build")

FLAKY = ArchSpec(name="flaky", description="fails at step 8", image_size=28, config=Cfg, build=Flaky)
BROKEN = ArchSpec(name="broken-build", description="fails to build", image_size=28, config=Cfg, build=broken_build)
"""


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """One local Ray instance with 2 CPUs for the module; its workers see two failing test plugins."""
    ray = pytest.importorskip("ray")
    plugins = tmp_path_factory.mktemp("plugins")
    make_dist(plugins, "sweep-test-plugins", {"flaky": "failing_archs:FLAKY", "broken-build": "failing_archs:BROKEN"},
              {"tiny_arch": GOOD_MODULE.replace("{name}", "tiny"), "failing_archs": FAILING})
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "SWEEP_TEST_LOG")}
    # Workers inherit this environment from ray.init.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugins), saved["PYTHONPATH"]) if p)
    os.environ["SWEEP_TEST_LOG"] = str(plugins / "attempts.log")
    sys.path.insert(0, str(plugins))
    default_registry.cache_clear()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        yield plugins
    finally:
        ray.shutdown()
        sys.path.remove(str(plugins))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        default_registry.cache_clear()


def test_ray_sweep_writes_the_same_runs_as_the_local_backend(ray_instance, tmp_path, capsys):
    args = ["sweep", "--arch", "vanilla,wgan", "--grid", "lr=1e-4,2e-4", *SMALL, "--eval-samples", "500"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--backend", "ray", "--cpus-per-run", "1", "--out", str(tmp_path / "ray")]) == 0
    assert main([*args, "--backend", "ray", "--no-shared-storage", "--out", str(tmp_path / "copied")]) == 0
    err = capsys.readouterr().err
    assert "on a Ray instance on this machine, 1 CPU and 0 GPU per run" in err and "files returned to the driver" in err

    local, on_ray, copied = (runs_by_point(sweep_folder(tmp_path / name)) for name in ("local", "ray", "copied"))
    assert len(local) == 4 and local.keys() == on_ray.keys() == copied.keys()
    for point, run_dir in local.items():
        assert_same_run(run_dir, on_ray[point])
        assert_same_run(run_dir, copied[point])
        assert on_ray[point].parent == sweep_folder(tmp_path / "ray")
        record = json.loads((copied[point] / "run.json").read_text())
        assert record["config"]["out"] == str(sweep_folder(tmp_path / "copied"))
        assert record["env"]["torch_threads"] == 1 and record["config"]["device"] == "cpu"
        assert (copied[point] / "tb").is_dir() and (copied[point] / "samples.png").is_file()


def test_failing_runs_are_retried_once_then_recorded_without_stopping_the_rest(ray_instance, tmp_path, capsys):
    log = ray_instance / "attempts.log"
    log.unlink(missing_ok=True)
    status = main(["sweep", "--arch", "flaky,vanilla,broken-build", "--steps", "12", "--sample-every", "0", "--no-eval",
                   "--backend", "ray", "--out", str(tmp_path)])
    assert status == 1
    plan = plan_of(sweep_folder(tmp_path))
    runs = {r["arch"]: r for r in plan["runs"]}
    assert {a: (r["status"], r["attempts"]) for a, r in runs.items()} == {
        "flaky": ("failed", 2), "vanilla": ("completed", 1), "broken-build": ("failed", 2)}
    assert "train_step raised RuntimeError at step 8: flaky fails at step 8" in runs["flaky"]["error"]
    assert runs["broken-build"]["error"] == "architecture 'broken-build': build raised ValueError: cannot build"
    assert runs["broken-build"]["run_dir"] is None
    assert sorted(log.read_text().split()) == ["broken-build", "broken-build", "flaky", "flaky"]
    # The failed attempt's folder is replaced by the retry's, which keeps what it earned.
    flaky = [p for p in sweep_folder(tmp_path).iterdir() if p.name.startswith("flaky-")]
    assert flaky == [sweep_folder(tmp_path) / runs["flaky"]["run_dir"]]
    assert json.loads((flaky[0] / "run.json").read_text())["status"] == "failed"
    err = capsys.readouterr().err
    assert "retrying (attempt 2 of 2)" in err and "failed flaky seed 0" in err


def test_interrupted_local_sweep_resumes_on_ray_without_shared_storage(ray_instance, tmp_path, capsys):
    args = ["sweep", "--arch", "vanilla", "--seeds", "2", *SMALL, "--no-eval"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "whole")]) == 0
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "cut")], stop=StopAfter(6)) == 128 + signal.SIGINT
    folder = sweep_folder(tmp_path / "cut")
    plan = plan_of(folder)
    assert [r["status"] for r in plan["runs"]] == ["interrupted", "queued"]
    cut = folder / plan["runs"][0]["run_dir"]
    assert (cut / "checkpoint.pt").is_file()
    assert f"continue with: python -m bench sweep --resume {folder}" in capsys.readouterr().err

    assert main(["sweep", "--resume", str(folder), "--backend", "ray", "--no-shared-storage"]) == 0
    plan = plan_of(folder)
    assert [r["status"] for r in plan["runs"]] == ["completed", "completed"]
    assert folder / plan["runs"][0]["run_dir"] == cut  # resumed in place from its checkpoint
    whole = runs_by_point(sweep_folder(tmp_path / "whole"))
    for point, run_dir in runs_by_point(folder).items():
        assert_same_run(whole[point], run_dir)


def test_ray_compare_writes_the_same_comparison_as_the_local_backend(ray_instance, tmp_path, capsys):
    args = ["compare", "--arch", "vanilla,lsgan", "--seeds", "2", *SMALL, "--eval-samples", "500", "--timing-rounds",
            "1"]
    assert main([*args, "--jobs", "1", "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--backend", "ray", "--out", str(tmp_path / "ray")]) == 0
    assert "on a Ray instance on this machine, 1 CPU and 0 GPU per run" in capsys.readouterr().err
    local, on_ray = ((tmp_path / name).glob("compare-*") for name in ("local", "ray"))
    (local,), (on_ray,) = list(local), list(on_ray)
    assert [(r["arch"], r["seed"], r["status"]) for r in plan_of(on_ray)["runs"]] == \
        [(r["arch"], r["seed"], r["status"]) for r in plan_of(local)["runs"]]
    assert (on_ray / "step_times.json").is_file()  # timed side by side here, as the local backend does
    by_point = runs_by_point(on_ray)
    for point, run_dir in runs_by_point(local).items():
        assert_same_run(run_dir, by_point[point])
    assert main(["compare", "--arch", "vanilla", "--address", "127.0.0.1:1", "--out", str(tmp_path / "x")]) == 2
    assert "--address only apply to --backend ray" in capsys.readouterr().err


def test_ray_trains_the_seeds_of_a_stack_as_one_task_writing_what_a_local_stack_writes(ray_instance, tmp_path,
                                                                                       capsys):
    args = ["compare", "--arch", "vanilla", "--seeds", "2", *SMALL, "--no-eval", "--timing-rounds", "0", "--stack"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--backend", "ray", "--out", str(tmp_path / "ray")]) == 0
    assert "1 CPU and 0 GPU per stack of up to 16 seeds" in capsys.readouterr().err
    (local,), (on_ray,) = (list((tmp_path / name).glob("compare-*")) for name in ("local", "ray"))
    by_point = runs_by_point(on_ray)
    for point, run_dir in runs_by_point(local).items():
        assert_same_run(run_dir, by_point[point])
        assert json.loads((by_point[point] / "run.json").read_text())["stack"]["size"] == 2
    assert main([*args, "--backend", "ray", "--no-shared-storage", "--out", str(tmp_path / "x")]) == 2
    assert "needs storage every node shares" in capsys.readouterr().err
