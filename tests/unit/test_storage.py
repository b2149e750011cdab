"""Run folders and atomic writes."""

from __future__ import annotations

import json

import pytest

from bench.errors import UsageError
from bench.storage import atomic_path, check_writable, make_run_dir, write_json


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


def test_check_writable_refuses_before_any_work(tmp_path):
    target = check_writable(tmp_path / "new" / "scores.json")
    assert target.parent.is_dir() and not target.exists()  # the folder is made, the file is not
    with pytest.raises(UsageError, match="is a folder; give a file name"):
        check_writable(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=f"--out {tmp_path}/file/a/b.json cannot be written: {tmp_path}/file is a "
                                         f"file, not a folder"):
        check_writable(tmp_path / "file" / "a" / "b.json")
