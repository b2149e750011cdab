"""A broken third-party plugin, through the command line: named, and the others keep working."""

from __future__ import annotations

import os

from helpers import make_dist, run_cli


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
