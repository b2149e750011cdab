"""run.json as a typed record: files of the previous release read, damage is named, writing round-trips."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.config import Budget
from bench.errors import UsageError
from bench.layout import Status
from bench.record import RunRecord, read_record
from bench.scores import METRIC_NAMES

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
LEGACY_RUNS = sorted(p.parent for p in LEGACY.glob("*/*/run.json"))


@pytest.mark.parametrize("run_dir", LEGACY_RUNS, ids=lambda p: p.name)
def test_run_json_of_the_previous_release_reads_and_writes_back_unchanged(run_dir):
    record = read_record(run_dir)
    assert record.status is Status.COMPLETED and record.metrics is not None
    original = json.loads((run_dir / "run.json").read_text())
    assert all(isinstance(record.metrics.value(m), (int, float)) for m in METRIC_NAMES if m in original["metrics"])
    assert record.evaluations[-1].step == record.steps
    assert json.dumps(record.to_dict()) == json.dumps(original)  # same keys, same order, same values


def test_write_then_read_is_the_same_record(tmp_path):
    record = read_record(LEGACY_RUNS[0])
    record.write(tmp_path)
    assert read_record(tmp_path) == record


def _damaged(data: dict, tmp_path: Path) -> str:
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(UsageError) as info:
        read_record(tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "run.json")) and "\n" not in message
    return message


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["config"].update(seed="7"), "config.seed is a string, expected an integer"),
    (lambda d: d.update(status="weird"), "status is 'weird', expected one of: pending, queued, running"),
    (lambda d: d.update(evaluations=[1]), "evaluations[0] is a number, expected an object"),
    (lambda d: d.update(metrics=[1]), "metrics is a list, expected an object or null"),
    (lambda d: d["metrics"].update(fid="low"), "metrics.fid is a string, expected a number"),
    (lambda d: d["timing"].pop("wall_s"), "missing timing.wall_s"),
    (lambda d: d.update(schema_version="1"), "schema_version is a string, expected an integer"),
])
def test_a_mistyped_or_incomplete_record_names_the_key(change, expected, tmp_path):
    data = json.loads((LEGACY_RUNS[0] / "run.json").read_text())
    change(data)
    assert expected in _damaged(data, tmp_path)


def test_absurd_nesting_is_a_damaged_file_not_a_crash(tmp_path):
    (tmp_path / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UsageError, match=re.escape("damaged run.json (nested too deeply)")):
        read_record(tmp_path)


def test_unknown_keys_are_ignored_so_a_newer_file_of_the_same_schema_reads(tmp_path):
    data = json.loads((LEGACY_RUNS[0] / "run.json").read_text())
    data["something_new"] = {"x": 1}
    data["timing"]["also_new"] = 3
    (tmp_path / "run.json").write_text(json.dumps(data))
    assert read_record(tmp_path).arch == data["arch"]


def test_records_can_be_built_in_code():
    record = RunRecord.from_dict(json.loads((LEGACY_RUNS[0] / "run.json").read_text()))
    assert record.seed == record.config.seed and record.config.budget.text() == "20 steps"


def test_contention_is_the_cpu_share_a_run_got_and_older_files_have_none(tmp_path):
    from bench.record import Contention

    assert Contention(cpu_s=9.0, wall_s=10.0, threads=1).contended is False
    assert Contention(cpu_s=9.0, wall_s=10.0, threads=2).cpu_share == 0.45
    assert Contention(cpu_s=9.0, wall_s=10.0, threads=2).contended is True
    assert read_record(LEGACY_RUNS[0]).contention is None
    assert "contention" not in read_record(LEGACY_RUNS[0]).to_dict()  # older files write back unchanged


def test_the_providing_package_is_recorded_and_older_files_lack_it(tmp_path):
    record = read_record(LEGACY_RUNS[0])
    assert record.package is None and record.package_version is None
    assert "package" not in record.to_dict()  # a record that does not know writes no key
    record.package, record.package_version = "gan-bench-mlp-hinge", "0.1.0"
    record.write(tmp_path)
    data = json.loads((tmp_path / "run.json").read_text())
    assert list(data)[:4] == ["schema_version", "arch", "package", "package_version"] and data["schema_version"] == 1
    assert read_record(tmp_path).package_version == "0.1.0"


def test_a_budget_reads_as_people_write_it():
    assert [Budget(kind, value).text() for kind, value in (("epochs", 1), ("epochs", 20), ("steps", 1),
                                                           ("steps", 2000), ("time_budget", 90.0))] == [
        "1 epoch", "20 epochs", "1 step", "2,000 steps", "90 s time budget"]
