"""A broken third-party plugin, through the command line: named, and the others keep working."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.scores import METRIC_NAMES

from helpers import GOOD_MODULE, REPO, ema_module, make_dist, run_cli


def test_cli_reports_a_broken_plugin_and_keeps_working(tmp_path, monkeypatch):
    make_dist(tmp_path, "broken-plugin", {"broken": "broken_arch:SPEC"},
              {"broken_arch": "raise RuntimeError('boom at import')\n"})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    listing = run_cli("list")
    failed = run_cli("run", "--arch", "broken", "--steps", "1")
    unknown = run_cli("run", "--arch", "vanila", "--steps", "1")
    assert listing.returncode == 0
    assert "broken" in listing.stdout and "boom at import" in listing.stdout and "vanilla" in listing.stdout
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "architecture 'broken'" in failed.stderr and "boom at import" in failed.stderr
    assert unknown.returncode == 2 and "did you mean 'vanilla'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_a_name_clash_is_shown_and_leaves_every_other_name_working(tmp_path, monkeypatch):
    """Two packages declaring one name made every command fail, `--arch lsgan` included."""
    make_dist(tmp_path, "twin-one", {"twin": "twin_one:SPEC"}, {"twin_one": GOOD_MODULE.replace("{name}", "twin")})
    make_dist(tmp_path, "twin-two", {"twin": "twin_two:SPEC"}, {"twin_two": GOOD_MODULE.replace("{name}", "twin")})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    listing = run_cli("list")
    clashing = run_cli("run", "--arch", "twin", "--steps", "1")
    other = run_cli("run", "--arch", "lsgan", "--steps", "2", "--batch-size", "8", "--no-eval",
                    "--out", str(tmp_path / "runs"))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "twin" in line)
    assert "twin-one, twin-two" in row and "registered by two" in row
    assert "lsgan" in listing.stdout and "vanilla" in listing.stdout
    assert clashing.returncode == 2 and clashing.stderr.strip() == (
        "error: architecture 'twin' is registered by two packages: twin-one and twin-two; uninstall one")
    assert other.returncode == 0, other.stderr


def test_eval_reproduces_the_metrics_of_a_plugin_that_samples_from_an_ema(tmp_path, monkeypatch):
    """bench eval rebuilt only the generator, so an EMA plugin was scored with a fresh EMA."""
    make_dist(tmp_path, "ema-plugin", {"ema": "ema_arch:SPEC"}, {"ema_arch": ema_module("ema")})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    trained = run_cli("run", "--arch", "ema", "--steps", "30", "--eval-samples", "200", "--log-every", "10",
                      "--out", str(tmp_path / "runs"))
    assert trained.returncode == 0, trained.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "sampling.pt").is_file() and (run_dir / "generator.pt").is_file()
    out = tmp_path / "eval.json"
    evaluated = run_cli("eval", str(run_dir), "--eval-samples", "200", "--out", str(out))
    assert evaluated.returncode == 0, evaluated.stderr
    own = json.loads((run_dir / "run.json").read_text())["metrics"]
    again = json.loads(out.read_text())["metrics"]
    assert {m: again[m] for m in METRIC_NAMES} == {m: own[m] for m in METRIC_NAMES}
    assert again["protocol"] == own["protocol"]


def test_a_broken_third_party_plugin_cannot_fail_gan_benchs_own_tests(tmp_path):
    """gan-bench's tests walked every installed architecture, so one broken plugin failed them."""
    make_dist(tmp_path, "broken-plugin", {"broken": "broken_arch:SPEC"},
              {"broken_arch": "raise RuntimeError('boom at import')\n"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    walking = ["tests/unit/test_contract.py", "tests/unit/test_architectures.py", "tests/integration/test_runner.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *walking],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[vanilla]" in proc.stdout and "[broken]" not in proc.stdout
