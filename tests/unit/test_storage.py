"""Run folders and atomic writes."""

from __future__ import annotations

import json

import pytest

from bench.errors import UsageError
from bench.storage import atomic_path, make_run_dir, write_json


def test_run_dirs_are_unique_within_one_second(tmp_path):
    dirs = {make_run_dir(tmp_path, "vanilla", 0) for _ in range(5)}
    assert len(dirs) == 5


def test_unwritable_out_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="--out"):
        make_run_dir(blocker / "runs", "vanilla", 0)


def test_atomic_write_keeps_the_old_version_on_failure(tmp_path):
    target = tmp_path / "run.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "trunc')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert list(tmp_path.iterdir()) == [target]
