"""The installed command works from any folder, whatever that folder holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench

from helpers import architecture_names

#: Packages of a user's own project that share gan-bench's names; importing either must never happen.
SHADOWS = {"bench/__init__.py": "raise ImportError('the user project bench package was imported')\n",
           "architectures/__init__.py": "raise ImportError('the user project architectures package was imported')\n"}


def console_script() -> str | None:
    here = Path(sys.executable).parent / "gan-bench"
    return str(here) if here.is_file() else shutil.which("gan-bench")


@pytest.fixture
def crowded(tmp_path):
    """A folder holding packages named bench and architectures of its own."""
    for name, source in SHADOWS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    return tmp_path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    env.pop("PYTHONPATH", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_gan_bench_trains_from_a_folder_with_its_own_bench_and_architectures_packages(crowded):
    script = console_script()
    if script is None:
        pytest.skip("gan-bench is not installed as a command here")
    listed = run([script, "list"], crowded)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in architecture_names()) and "failed" not in listed.stdout
    trained = run([script, "run", "--arch", "vanilla", "--steps", "20", "--no-eval", "--out", str(crowded / "runs")],
                  crowded)
    assert trained.returncode == 0, trained.stderr
    (record,) = (json.loads(path.read_text()) for path in (crowded / "runs").glob("vanilla-*/run.json"))
    assert (record["env"]["program"], record["env"]["argv"][:3]) == ("gan-bench", ["run", "--arch", "vanilla"])
    report = run([script, "report", str(crowded / "runs"), "--format", "md"], crowded)
    assert "gan-bench run --arch vanilla --steps 20" in report.stdout and "python -m bench" not in report.stdout


def test_gan_bench_names_itself_as_invoked():
    script = console_script()
    if script is None:
        pytest.skip("gan-bench is not installed as a command here")
    version = run([script, "--version"], Path.cwd())
    assert (version.returncode, version.stdout.strip()) == (0, f"gan-bench {bench.__version__}")
    helped = run([script, "run", "--help"], Path.cwd())
    assert helped.stdout.startswith("usage: gan-bench run") and "see: gan-bench list" in helped.stdout
    refused = run([script, "run"], Path.cwd())
    assert (refused.returncode, refused.stderr.strip()) == (2, "error: --arch NAME is required (see: gan-bench list)")
    module = run([sys.executable, "-m", "bench", "run", "--help"], Path.cwd())
    assert module.stdout.startswith("usage: python -m bench run") and "gan-bench" not in module.stdout


def test_a_folder_with_its_own_architectures_package_loads_every_built_in(crowded):
    (crowded / "bench" / "__init__.py").unlink()  # python -m bench runs the bench it finds first: keep ours
    (crowded / "bench").rmdir()
    listed = run([sys.executable, "-m", "bench", "list"], crowded)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in architecture_names()) and "failed" not in listed.stdout
