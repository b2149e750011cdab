"""What the documentation states that the code can check: run.json's fields, the metrics, the README's length."""

from __future__ import annotations

import dataclasses
import re
import typing

from bench.record import RunRecord
from bench.scores import METRIC_NAMES, METRICS
from helpers import REPO


def section(page: str, heading: str) -> str:
    """The text of ``heading``'s section of ``docs/<page>``, up to the next heading of its level or higher."""
    text = (REPO / "docs" / page).read_text()
    level = heading.split(" ", 1)[0]
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]


#: Metric keys: described once, on the metrics page, which run.json's rows link to.
METRIC_KEYS = frozenset(m.name for m in METRICS)


def nested_fields(tp: typing.Any) -> list[str]:
    """The field names of the dataclass a field holds (directly, optionally, or as list items)."""
    candidates = [tp, *typing.get_args(tp), *(a for arg in typing.get_args(tp) for a in typing.get_args(arg))]
    for candidate in candidates:
        if dataclasses.is_dataclass(candidate) and candidate.__module__ == "bench.record" \
                and candidate.__name__ != "Metrics":  # metrics and references: named where they are described
            return [f.name for f in dataclasses.fields(candidate)]
    return []


def test_the_run_json_table_names_every_field_of_the_record_in_its_order():
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", section("running.md", "## run.json"), re.MULTILINE)
    hints = typing.get_type_hints(RunRecord)
    assert [name for name, _ in rows] == [f.name for f in dataclasses.fields(RunRecord)]
    for name, text in rows:
        fields = nested_fields(hints[name])
        holds_metrics = set(METRIC_NAMES) <= set(fields)  # evaluations: the headline metrics, said by exception
        missing = [key for key in fields if not (holds_metrics and key in METRIC_KEYS) and f"`{key}`" not in text]
        assert not missing, f"run.json's {name} row leaves out {missing}"
        if holds_metrics:
            assert "(metrics.md)" in text, f"run.json's {name} row does not link to the metrics"
            assert [key for key in METRIC_KEYS - set(fields) if f"`{key}`" not in text] == []


def test_the_metrics_row_names_every_field_of_a_metrics_record():
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", section("running.md", "## run.json"), re.MULTILINE))
    metrics = typing.get_type_hints(RunRecord)["metrics"]
    (record,) = (a for a in typing.get_args(metrics) if dataclasses.is_dataclass(a))
    assert "(metrics.md)" in rows["metrics"]
    assert [f.name for f in dataclasses.fields(record)
            if f.name not in METRIC_KEYS and f"`{f.name}`" not in rows["metrics"]] == []


def test_the_metrics_page_describes_every_metric_as_bench_scores_does():
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \| (lower|higher|-) \| .* \|$", (REPO / "docs" / "metrics.md").read_text(),
                      re.MULTILINE)
    better = {True: "lower", False: "higher", None: "-"}
    assert [(name, label.replace("\\|", "|"), way) for name, label, way in rows] == \
        [(m.name, m.label, better[m.lower_is_better]) for m in METRICS]


def test_the_readme_stays_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 300
