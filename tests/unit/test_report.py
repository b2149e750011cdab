"""``bench report``: loading, grouping by protocol, aggregation over seeds, formats, figures."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import re
import shlex
import shutil
import pytest
from PIL import Image

from bench.cli import build_parser, main
from bench.config import DEFAULT_FID_TARGETS, PlanSettings
from bench.errors import UsageError
from bench.layout import PLAN
from bench.plans.plan import Plan, PlanKind
from bench.plans.steptimes import ArchStepTimes, StepTimes
from bench.record import Contention, Evaluation, StackInfo
from bench.report.aggregate import (
    TimeToQuality, best_per_arch, group_runs, load_runs, protocol_note, time_to_quality,
)
from bench.report.publish import write_report
from bench.report.render import FORMATS, LATEX_COLUMNS, render, render_runs_csv
from bench.storage import write_json
from bench.report.cells import ci_text, mean_pm_std, mean_text, time_to_quality_texts
from bench.report.terminal import print_comparison
from bench.tables import millions, pm_text
from bench.stats import Stats
from helpers import REPO, make_record, make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEGACY = REPO / "tests" / "data" / "legacy"


def groups_of(*paths, **kwargs):
    return group_runs(load_runs(paths), **kwargs)


def only_row(groups, arch):
    (row,) = [row for g in groups for row in g.rows if row.arch == arch]
    return row


# Aggregation over seeds -----------------------------------------------------------------------


def test_seeds_aggregate_mean_and_sample_std(tmp_path):
    for seed, fid in enumerate((10.0, 12.0, 17.0)):
        make_run(tmp_path, seed=seed, fid=fid, step_ms=10.0 + seed * 5, images_per_s=1000.0 * (seed + 1),
                 wall_s=90.0 + seed * 10)
    (group,) = groups_of(tmp_path)
    (row,) = group.rows
    assert row.arch == "vanilla" and sorted(row.seeds) == [0, 1, 2] and row.status == {"completed": 3}
    fid = row.metrics["fid"]
    assert fid.n == 3 and fid.mean == pytest.approx(13.0) and fid.std == pytest.approx(math.sqrt(13.0))
    assert fid.std == pytest.approx(3.605551, abs=1e-6)
    kid = row.metrics["kid"]
    assert kid.mean == pytest.approx(0.013) and kid.std == pytest.approx(0.0036055, abs=1e-6)
    assert row.step_ms_median == 15.0 and row.images_per_s.mean == 2000.0 and row.wall_s.mean == 100.0
    assert row.params_g == 1_510_032 and row.flops_per_step == 1_234_000_000 and not row.best  # nothing to beat

    (doc,) = json.loads(render([group], "json"))
    (r,) = doc["rows"]
    assert r["fid"]["mean"] == pytest.approx(13.0) and r["fid"]["std"] == pytest.approx(3.6055513)
    assert r["runs"] == 3 and r["status"] == {"completed": 3}
    assert doc["references"]["train_vs_test"]["fid"] == 0.5


def test_one_seed_has_no_std_and_an_untested_lowest_fid_is_not_bold(tmp_path):
    make_run(tmp_path, arch="vanilla", fid=30.0)
    make_run(tmp_path, arch="dcgan", fid=8.0)
    (group,) = groups_of(tmp_path)
    assert [r.arch for r in group.rows] == ["dcgan", "vanilla"]
    assert not only_row([group], "dcgan").best and not only_row([group], "vanilla").best
    assert only_row([group], "vanilla").metrics["fid"].std is None
    md = render([group], "md")
    assert "| 8 ± - |" in md and "| 30 ± - |" in md and "**8" not in md
    assert "no FID in bold: no row's FID is better than every other row's by the pairwise tests" in md
    assert r"8 $\pm$ -" in render([group], "latex") and r"\textbf{8" not in render([group], "latex")


def test_bold_marks_only_the_row_the_tests_find_better_than_every_other(tmp_path):
    apart = {"dcgan": (8, 9, 10, 11, 12), "lsgan": (20, 21, 22, 23, 24), "vanilla": (40, 41, 42, 43, 44)}
    overlap = {**apart, "dcgan": (8, 30, 9, 31, 10)}  # the lowest mean alone: dcgan's seeds straddle lsgan's
    for name, fids_of in (("apart", apart), ("overlap", overlap)):
        for arch, fids in fids_of.items():
            for seed, fid in enumerate(fids):
                make_run(tmp_path / name, arch=arch, seed=seed, fid=float(fid))
    groups = groups_of(tmp_path / "apart")
    assert [row.arch for row in groups[0].rows if row.best] == ["dcgan"]
    md = render(groups, "md")
    assert "| **10.0 ± 1.6** |" in md and "in bold the FID of dcgan, which the pairwise tests find better" in md
    assert r"\textbf{10.0 $\pm$ 1.6}" in render(groups, "latex")
    groups = groups_of(tmp_path / "overlap")
    assert only_row(groups, "dcgan").metrics["fid"].mean == pytest.approx(17.6)
    assert not any(r.best for r in groups[0].rows)
    assert "**" not in render(groups, "md").split("### Pairwise", 1)[0].split("|", 1)[1]
    assert [r["best_fid"] for r in json.loads(render(groups, "json"))[0]["rows"]] == [False, False, False]


def test_diverged_and_unevaluated_runs_join_their_seeds(tmp_path):
    make_run(tmp_path, arch="wgan", seed=0, fid=20.0)
    make_run(tmp_path, arch="wgan", seed=1, fid=None, status="diverged")  # no metrics, no eval protocol
    make_run(tmp_path, arch="wgan", seed=2, fid=22.0, status="interrupted")
    (group,) = groups_of(tmp_path)
    (row,) = group.rows
    assert row.status == {"completed": 1, "diverged": 1, "interrupted": 1} and row.diverged
    assert row.metrics["fid"].n == 2 and row.metrics["fid"].mean == pytest.approx(21.0)
    assert "1 completed, 1 diverged, 1 interrupted" in render([group], "md")


# Time to quality ------------------------------------------------------------------------------


def test_time_to_quality_is_the_first_evaluation_below_target():
    log = [
        Evaluation(step=400, train_wall_s=40.0, fid=9.0),
        Evaluation(step=200, train_wall_s=20.0, fid=15.0),
        Evaluation(step=600, train_wall_s=60.0, fid=5.0),
        Evaluation(step=100, train_wall_s=10.0, fid=float("nan")),
    ]
    assert time_to_quality(log, 10.0) is log[0]
    assert time_to_quality(log, 15.0) is log[0]  # "below" is strict
    assert time_to_quality(log, 20.0) is log[1]
    assert time_to_quality(log, 1.0) is None
    assert time_to_quality([], 10.0) is None


def test_time_to_quality_aggregates_over_seeds(tmp_path):
    make_run(tmp_path, arch="dcgan", seed=0, evaluations=[(200, 20.0, 12.0), (400, 40.0, 8.0)])
    make_run(tmp_path, arch="dcgan", seed=1, evaluations=[(200, 22.0, 9.0), (400, 44.0, 7.0)])
    make_run(tmp_path, arch="dcgan", seed=2, evaluations=[(200, 21.0, 11.0), (400, 42.0, 10.5)])
    make_run(tmp_path, arch="vanilla", seed=0, evaluations=[(200, 10.0, 30.0), (400, 20.0, 25.0)])
    make_run(tmp_path, arch="lsgan", seed=0, evaluations=[(200, 30.0, 9.5)])
    make_run(tmp_path, arch="lsgan", seed=1, evaluations=[(200, 33.0, 8.5)])
    groups = groups_of(tmp_path, fid_target=10.0)
    dcgan, vanilla, lsgan = (only_row(groups, a).ttq for a in ("dcgan", "vanilla", "lsgan"))
    # the lower middle of the seeds that reached it: an evaluation one of them made, its batches and its seconds
    assert (dcgan.reached, dcgan.runs, dcgan.step, dcgan.wall_s) == (2, 3, 200, 22.0)
    assert (vanilla.reached, vanilla.runs, vanilla.step, vanilla.wall_s) == (0, 1, None, None)
    assert (lsgan.reached, lsgan.runs, lsgan.step, lsgan.wall_s) == (2, 2, 200, 30.0)
    md = render(groups, "md")
    assert "22 (2/3 reached) | - | 200 (2/3 reached)" in md
    assert "not reached | not reached" in md
    assert "| 30 | - | 200 |" in md
    rows = {r["arch"]: r for r in csv.DictReader(io.StringIO(render(groups, "csv")))}
    assert rows["dcgan"]["ttq_reached"] == "2" and rows["dcgan"]["ttq_runs"] == "3"
    assert rows["vanilla"]["ttq_step"] == "" and rows["lsgan"]["ttq_wall_s"] == "30.0"


# Protocols and devices ------------------------------------------------------------------------


def test_protocol_mismatch_is_separated_or_refused_in_strict_mode(tmp_path):
    for arch in ("vanilla", "dcgan"):
        make_run(tmp_path, arch=arch, train_subset=10_000)
        make_run(tmp_path, arch=arch, train_subset=None)
    groups = groups_of(tmp_path)
    assert len(groups) == 2
    assert sorted(g.protocol["train_subset"] or 60_000 for g in groups) == [10_000, 60_000]
    assert all(len(g.rows) == 2 and all(len(r.runs) == 1 for r in g.rows) for g in groups)
    assert "train_subset" in protocol_note(groups)

    with pytest.raises(UsageError, match=r"train_subset: 10,000 \| all"):
        groups_of(tmp_path, require_single_protocol=True)

    (mixed,) = groups_of(tmp_path, allow_mixed=True)
    assert [len(r.runs) for r in mixed.rows] == [2, 2] and set(mixed.mixed) == {"train_subset"}
    assert "mixed protocols in this table" in render([mixed], "md")
    with pytest.raises(UsageError, match="contradict"):
        groups_of(tmp_path, allow_mixed=True, require_single_protocol=True)


def test_precision_and_eval_protocol_are_part_of_the_protocol(tmp_path):
    older = make_run(tmp_path, seed=0)
    record = json.loads((older / "run.json").read_text())
    del record["config"]["precision"]  # missing means fp32
    write_json(older / "run.json", record)
    make_run(tmp_path, seed=1, precision="fp32")
    make_run(tmp_path, seed=2, precision="bf16")
    groups = groups_of(tmp_path)
    assert sorted(len(g.runs) for g in groups) == [1, 2]
    assert sorted(g.protocol["precision"] for g in groups) == ["bf16", "fp32"]

    record = make_record(seed=3)
    record.metrics.protocol["n_generated"] = 5000
    make_run(tmp_path / "other", record)
    with pytest.raises(UsageError, match=r"eval\.n_generated: 5,000 \| 10,000"):
        groups_of(tmp_path / "other", *[g.runs[0].path for g in groups if g.protocol["precision"] == "fp32"],
                  require_single_protocol=True)


def test_different_devices_are_separate_groups(tmp_path):
    make_run(tmp_path, device="NVIDIA H100", fid=5.0)
    make_run(tmp_path, device="Intel Xeon", fid=6.0)
    for kwargs in ({}, {"allow_mixed": True}, {"require_single_protocol": True}):
        groups = groups_of(tmp_path, **kwargs)
        assert [g.device for g in groups] == ["Intel Xeon", "NVIDIA H100"]
        assert not any(r.best for g in groups for r in g.rows)  # one row a group: nothing to test it against
    md = render(groups, "md")
    assert "## 1. Intel Xeon ·" in md and "## 2. NVIDIA H100 ·" in md
    assert "2 devices" in protocol_note(groups)


# Output formats -------------------------------------------------------------------------------


@pytest.fixture
def three_archs(tmp_path):
    for arch, fids in (("vanilla", (30.0, 32.0)), ("dcgan", (8.0, 9.0)), ("wgan_gp", (15.0, 16.0))):
        for seed, fid in enumerate(fids):
            make_run(tmp_path / "runs", arch=arch, seed=seed, fid=fid,
                     evaluations=[(200, 20.0 + seed, fid * 2), (600, 60.0 + seed, fid)])
    return tmp_path / "runs"


def test_csv_has_one_row_per_architecture_and_group(three_archs, tmp_path):
    make_run(tmp_path / "runs", arch="vanilla", train_subset=10_000)
    rows = list(csv.DictReader(io.StringIO(render(groups_of(three_archs), "csv"))))
    by_subset = {subset: sorted(r["arch"] for r in rows if r["train_subset"] == subset) for subset in ("", "10000")}
    assert by_subset == {"": ["dcgan", "vanilla", "wgan_gp"], "10000": ["vanilla"]} and len(rows) == 4
    assert len({r["group"] for r in rows}) == 2
    dcgan = next(r for r in rows if r["arch"] == "dcgan")
    assert float(dcgan["fid_mean"]) == pytest.approx(8.5) and dcgan["best_fid"] == "False"
    assert dcgan["device"] == "Test CPU" and dcgan["budget"] == "600 steps" and dcgan["batch_size"] == "64"
    assert json.loads(dcgan["eval_protocol"])["n_generated"] == 10000


def test_json_parses_as_groups_with_rows(three_archs):
    doc = json.loads(render(groups_of(three_archs), "json"))
    assert isinstance(doc, list) and len(doc) == 1
    assert [r["arch"] for r in doc[0]["rows"]] == ["dcgan", "vanilla", "wgan_gp"]
    assert doc[0]["protocol"]["eval.feature_network_sha256"] == "ab" * 32
    assert [r["best_fid"] for r in doc[0]["rows"]] == [False, False, False]  # two seeds each: nothing tested


def test_latex_has_one_row_per_architecture(three_archs):
    tex = render(groups_of(three_archs), "latex")
    assert tex.count(r"\begin{tabular}") == 1 and r"\toprule" in tex
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule", 1)[0]
    assert body.count("\\\\") == 3
    assert r"wgan\_gp" in body and "wgan_gp" not in body.replace(r"wgan\_gp", "")
    assert r"8.50 $\pm$ 0.71" in body and r"\textbf{8.5" not in body
    assert r"KID$\times$10$^3$" in tex and f"FID\\textless{{}}{DEFAULT_FID_TARGETS[28]:g}" in tex


def test_markdown_has_a_header_and_one_row_per_architecture(three_archs):
    md = render(groups_of(three_archs), "md")
    comparison = md.split("### Pairwise tests on FID", 1)[0]  # the pairwise tests are a table of their own
    table = [line for line in comparison.splitlines() if line.startswith("|")]
    assert table[0].startswith("| arch | runs | status |") and re.fullmatch(r"\|( -+:? \|)+", table[1])
    assert len(table) == 2 + 3
    assert "| 8.50 ± 0.71 |" in md and "reference train vs test: FID 0.5" in md
    assert "## 1. Test CPU · 600 steps · batch 64 · all training images · fp32 · scored at 28x28 · eval" in md


#: A run.json as an older release wrote it: no metrics, evaluations, references, FLOPs, start
#: time or error keys, and only a few config and env keys.
OLDER_RUN_JSON = {
    "schema_version": 1, "arch": "vanilla", "status": "completed", "diverged_at_step": None,
    "config": {"arch": "vanilla", "epochs": None, "steps": 600, "time_budget": None, "batch_size": 64, "seed": 0,
               "device": "cpu", "sample_every": 400, "log_every": 200, "warmup_steps": 10, "train_subset": None,
               "data_dir": None, "budget": {"kind": "steps", "value": 600}, "image_size": 28,
               "hparams": {"batch_size": 64, "latent_dim": 100, "lr": 2e-4}},
    "params": {"generator": 1_510_032, "discriminator": 533_505}, "steps": 600, "images_seen": 600 * 64,
    "timing": {"warmup_steps": 10, "measured_steps": 590, "step_ms_median": 10.0, "step_ms_p10": 10.0,
               "step_ms_p90": 10.0, "images_per_s": 6400.0, "wall_s": 100.0},
    "losses": {"d": 0.5, "g": 0.7}, "discriminator": {"d_real": 0.6, "d_fake": 0.4},
    "env": {"device": "cpu", "device_name": "Test CPU"},
}


def test_every_format_renders_an_older_run_without_metrics(tmp_path):
    (tmp_path / "old").mkdir()
    write_json(tmp_path / "old" / "run.json", OLDER_RUN_JSON)
    groups = groups_of(tmp_path)
    for fmt in FORMATS:
        assert "vanilla" in render(groups, fmt)
    assert only_row(groups, "vanilla").ttq.runs == 0


# Loading --------------------------------------------------------------------------------------


def test_load_runs_finds_run_folders_recursively(tmp_path):
    a = make_run(tmp_path / "sweep" / "lr1", seed=0)
    b = make_run(tmp_path / "sweep" / "lr2" / "deeper", seed=1)
    (a / "tb").mkdir()
    assert [r.path for r in load_runs([tmp_path])] == [a, b]
    assert [r.path for r in load_runs([a, b / "run.json", tmp_path])] == [a, b]  # no duplicates


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema_version": 1, "arch": "vanilla"}', "missing status, config.budget.kind"),
        ('{"schema_version": 99}', "schema_version 99 is newer"),
    ],
)
def test_damaged_run_json_is_a_usage_error_naming_the_file(tmp_path, text, message):
    make_run(tmp_path, seed=0)
    bad = make_run(tmp_path, seed=1)
    (bad / "run.json").write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        load_runs([tmp_path])
    assert str(bad / "run.json") in str(info.value) and "\n" not in str(info.value)


def test_no_runs_is_a_usage_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UsageError, match="no runs found in"):
        load_runs([tmp_path / "empty"])
    with pytest.raises(UsageError, match="no such file or folder"):
        load_runs([tmp_path / "missing"])


# Writing, figures and the command line ---------------------------------------------------------


def test_write_report_writes_table_and_figures(three_archs, tmp_path):
    (next(three_archs.glob("vanilla-s0-*")) / "samples.png").write_bytes(b"not a png")  # that panel is left out
    out = tmp_path / "published" / "mnist.md"
    report = write_report([three_archs], "md", out, fid_target=20.0, allow_mixed=False)
    names = sorted(p.name for p in report.figures)
    assert names == ["mnist-fid-vs-batches.png", "mnist-fid-vs-compute.png", "mnist-fid-vs-time.png",
                     "mnist-losses.png", "mnist-samples.png"]
    for path in report.figures:
        assert path.parent == out.parent and path.read_bytes()[:8] == PNG_MAGIC
        # For papers: print resolution, and the same figure as PDF and SVG beside it.
        with Image.open(path) as png:
            assert min(png.info["dpi"]) >= 199.9
        assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in path.with_suffix(".svg").read_bytes()[:1000]
    md = out.read_text()
    assert "![Generator and discriminator losses (mean over seeds)](mnist-losses.png)" in md
    assert "(mnist-samples.png)" in md and "batches to FID<20" in md
    assert ".pdf" not in md and ".svg" not in md  # Markdown links the PNGs
    assert "![FID for compute: against training FLOPs and against training time" in md
    assert not list(out.parent.glob(".*tmp"))  # atomic writes leave no temporaries
    # The same runs give the same files: no dates, no random ids.
    again = write_report([three_archs], "md", tmp_path / "again" / "mnist.md", fid_target=20.0)
    for first, second in zip(report.figures, again.figures, strict=True):
        for fmt in ("png", "pdf", "svg"):
            assert first.with_suffix(f".{fmt}").read_bytes() == second.with_suffix(f".{fmt}").read_bytes(), fmt


def test_write_report_refuses_a_folder_as_out(three_archs, tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        write_report([three_archs], "md", tmp_path)
    with pytest.raises(UsageError, match=re.escape(f"e.g. {tmp_path / 'report.tex'}")):  # the format's suffix
        write_report([three_archs], "latex", tmp_path)
    with pytest.raises(UsageError, match="unknown report format 'html'; choose from: md, csv, json, latex"):
        write_report([three_archs], "html", tmp_path / "t.html")


def test_write_report_without_out_prints_verbatim(three_archs, tmp_path, capsys):
    report = write_report([three_archs], "csv", None)
    assert report.figures == [] and report.out is None
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["arch"] for r in rows] == ["dcgan", "vanilla", "wgan_gp"]
    assert not list(tmp_path.glob("*.png"))


def report_parser() -> argparse.ArgumentParser:
    return build_parser("report")


@pytest.mark.parametrize(("scale", "levels"), [(28, "README-fid-levels-28.json"), (32, "README-fid-levels-32.json")])
def test_each_scales_default_fid_target_is_the_level_held_out_runs_support(scale, levels):
    """Each target is checked on runs that no published table it judges holds (other seeds, another machine)."""
    levels = json.loads((REPO / "results" / levels).read_text())
    target = levels["proposed_target"]  # every run at or below it made recognizable digits
    beyond = min(r["fid"] for r in levels["runs"] if r["fid"] > target)  # the first one that did not
    assert target <= DEFAULT_FID_TARGETS[scale] < beyond


def test_the_default_fid_target_follows_each_tables_evaluation_scale(tmp_path):
    for scale in (28, 32):  # the same curve: FID 300 after 200 batches, 90 after 600
        record = make_record(arch=f"at{scale}", fid=90.0, evaluations=[(200, 20.0, 300.0), (600, 60.0, 90.0)])
        record.metrics.protocol["real_image_size"] = scale
        make_run(tmp_path, record)
    groups = groups_of(tmp_path)
    assert {g.protocol["eval.real_image_size"]: g.fid_target for g in groups} == DEFAULT_FID_TARGETS
    # 300 is under 28x28's target of 400, not under 32x32's of 100
    assert [only_row(groups, f"at{scale}").ttq.step for scale in (28, 32)] == [200, 600]
    assert {g.fid_target for g in groups_of(tmp_path, fid_target=50.0)} == {50.0}  # a target given is every table's


def test_parser_defaults_and_options():
    args = report_parser().parse_args(["report", "runs/"])
    assert (args.paths, args.format, args.out, args.fid_target) == (["runs/"], None, None, None)
    assert (args.allow_mixed, args.strict, args.figures) == (False, False, True)
    args = report_parser().parse_args(["report", "a", "b", "--format", "latex", "--out", "t.tex", "--fid-target", "7.5",
                                       "--allow-mixed", "--no-figures"])
    assert (args.paths, args.format, args.out, args.fid_target, args.allow_mixed, args.figures) == (
        ["a", "b"], "latex", "t.tex", 7.5, True, False)
    for bad in (["--format", "html"], ["--fid-target", "-1"], ["--allow-mixed", "--strict"]):
        with pytest.raises(SystemExit) as info:
            report_parser().parse_args(["report", "runs/", *bad])
        assert info.value.code == 2


def test_an_intro_file_is_read_for_the_top_of_the_report(three_archs, tmp_path, capsys):
    intro = tmp_path / "intro.md"
    intro.write_text("What was run.\n\n## Findings\n\nlsgan is best.\n", encoding="utf-8")
    out = tmp_path / "report.md"
    assert main(["report", str(three_archs), "--out", str(out), "--no-figures", "--intro-file", str(intro)]) == 0
    md = out.read_text()
    assert md.startswith("# GAN architectures on MNIST\n\nWhat was run.\n\n## Findings\n\nlsgan is best.\n\n")
    assert "--intro-file .../intro.md" in md  # the report's own command names the file, not its text
    for args, message in ((["--intro-file", str(tmp_path / "none.md")], "cannot read"),
                          (["--intro", "x", "--intro-file", str(intro)], "not allowed with")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["report", str(three_archs), *args])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2
        assert len(err.splitlines()) == 1 and message in err


def test_report_command_writes_file_and_prints_table(three_archs, tmp_path, capsys):
    out = tmp_path / "table.json"
    args = report_parser().parse_args(["report", str(three_archs), "--format", "json", "--out", str(out),
                                       "--no-figures"])
    assert args.func(args) == 0
    assert [r["arch"] for r in json.loads(out.read_text())[0]["rows"]] == ["dcgan", "vanilla", "wgan_gp"]
    printed = capsys.readouterr().out
    assert "dcgan" in printed and f"report: {out}" in printed and not list(tmp_path.glob("*.png"))


def test_report_command_notes_split_protocols(tmp_path, capsys):
    make_run(tmp_path, train_subset=10_000)
    make_run(tmp_path, train_subset=None)
    args = report_parser().parse_args(["report", str(tmp_path), "--format", "csv"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 2
    assert "note: the runs differ in protocol (train_subset: 10,000 | all); shown as separate tables" in captured.err


def test_best_per_arch_picks_the_lowest_mean_fid_point(tmp_path):
    for lr, fids in ((1e-4, (20.0, 22.0)), (2e-4, (11.0, 13.0)), (4e-4, (40.0, 10.0))):
        for seed, fid in enumerate(fids):
            make_run(tmp_path, arch="dcgan", seed=seed, fid=fid, hparams={"lr": lr}, name=f"dcgan-{lr}-{seed}")
    make_run(tmp_path, arch="vanilla", fid=30.0)
    groups = groups_of(tmp_path, by_hparams=True)
    assert len(groups[0].rows) == 4 and "lr=0.0002" in render(groups, "md")
    (best,) = best_per_arch(groups)
    assert [(r.arch, r.hparams["lr"] if r.arch == "dcgan" else None) for r in best.rows] == [
        ("dcgan", 2e-4), ("vanilla", None)]
    assert best.rows[0].metrics["fid"].mean == pytest.approx(12.0)


# How a report was made: the plans' commands and its own ----------------------------------------

LEGACY_COMMANDS = [
    "python -m bench compare --arch vanilla,wgan --seeds 2 --steps 20 --threads 1 --eval-samples 200 --log-every 10",
    "python -m bench sweep --arch lsgan --seeds 1 --steps 20 --threads 1 --eval-samples 200 --log-every 10 "
    "--grid lr=1e-4,2e-4",
]


def how_made(md: str) -> list[str]:
    """The commands in a Markdown report's "How this was made" section."""
    section = md.split("## How this was made", 1)[1]
    return section.split("```sh\n", 1)[1].split("\n```", 1)[0].splitlines()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_report_renders_the_previous_release_folders(fmt, tmp_path):
    """Plans of the previous release hold absolute /tmp paths and no command; the report rebuilds it."""
    out = tmp_path / f"legacy.{FORMATS[fmt].suffix}"
    argv = ["report", str(LEGACY), "--format", fmt, "--out", str(out), "--no-figures"]
    args = report_parser().parse_args(argv)
    args.argv = argv
    assert args.func(args) == 0
    text = out.read_text()
    assert all(arch in text for arch in ("vanilla", "wgan", "lsgan"))
    if fmt == "md":
        # this machine's folders are left out: an absolute path keeps its last part only
        assert how_made(text) == [*LEGACY_COMMANDS, "python -m bench report .../legacy --format md --out .../legacy.md "
                                                    "--no-figures"]
        assert "| lsgan | 2 | 2 completed |" in text  # the sweep folder's runs share the comparison's protocol
    if fmt == "json":
        (group,) = json.loads(text)
        assert [(r["arch"], r["runs"]) for r in group["rows"]] == [("lsgan", 2), ("vanilla", 2), ("wgan", 2)]


def test_a_stored_command_is_rendered_as_typed(tmp_path):
    folder = shutil.copytree(LEGACY / "compare-20261130T084225Z", tmp_path / "compare")
    plan = Plan.load(folder)
    plan.command = ["compare", "--arch", "vanilla,wgan", "--seeds", "2", "--out", "my runs/today"]
    plan.save()
    md = render(groups_of(folder), "md")
    assert how_made(md) == ["python -m bench " + shlex.join(plan.command)]
    assert how_made(md)[0].endswith("--out 'my runs/today'")


def test_a_damaged_plan_only_costs_the_provenance_line(tmp_path):
    folder = shutil.copytree(LEGACY / "sweep-20261130T084233Z", tmp_path / "sweep")
    (folder / PLAN).write_text('{"kind": "sweep", "runs": ')
    groups = groups_of(folder)
    md = render(groups, "md", command="python -m bench report sweep")
    assert how_made(md) == ["python -m bench report sweep"] and "lsgan" in md
    assert "To reproduce" not in render(groups, "md")  # the runs' own recorded commands remain


def test_how_it_was_made_lists_every_command_the_runs_recorded_with_its_commit_and_no_machine_paths(tmp_path):
    started = ["compare", "--arch", "vanilla", "--seeds", "3", "--out", "/home/me/runs"]
    for seed, (argv, commit) in enumerate(((started, "a" * 40), (started, "a" * 40),
                                           (["compare", "--resume", "/home/me/runs/compare-X"], "b" * 40 + "-dirty"))):
        record = make_record(seed=seed)
        record.env.argv, record.env.git_commit = argv, commit
        make_run(tmp_path / "compare-X", record)
    md = render(groups_of(tmp_path), "md")
    section = md.split("## How this was made", 1)[1]
    assert ("python -m bench compare --arch vanilla --seeds 3 --out .../runs  "
            f"# compare-X: 2 runs, gan-bench commit {'a' * 40}\n") in section
    assert ("python -m bench compare --resume .../compare-X  "
            f"# compare-X: 1 run, gan-bench commit {'b' * 40}-dirty\n") in section
    assert "/home/me" not in md


def test_how_it_was_made_names_the_package_and_version_of_each_architecture(tmp_path):
    """run.json records which package provided the architecture; the report lists them."""
    for arch, package in (("vanilla", "gan-bench"), ("wgan", "gan-bench"), ("mlp-hinge", "gan-bench-mlp-hinge")):
        record = make_record(arch=arch)
        record.package, record.package_version = package, "0.1.0"
        make_run(tmp_path, record)
    make_run(tmp_path, arch="lsgan")  # written before run.json recorded its package
    md = render(groups_of(tmp_path), "md")
    section = md.split("## How this was made", 1)[1]
    assert ("architectures: vanilla, wgan from gan-bench 0.1.0; mlp-hinge from gan-bench-mlp-hinge 0.1.0; "
            "lsgan (package not recorded)\n") in section
    assert "```sh" not in section  # no plan, no report command: nothing to reproduce with


# Cells of the comparison tables ---------------------------------------------------------------


def test_cell_helpers_format_stats_counts_and_time_to_quality():
    # a mean ± spread stops at the spread's second digit, or at the mean's last where that is coarser
    assert mean_pm_std(Stats.of([8.0, 9.0])) == "8.50 ± 0.71"
    assert mean_pm_std(Stats.of([0.03])) == "0.03 ± -"  # one seed has no spread
    assert mean_pm_std(Stats.of([0.012, 0.013]), 1e3) == "12.50 ± 0.71"
    assert (pm_text(1880.4, 41.8, 3), pm_text(1880.4, 41.8), pm_text(1152.3, 113.0)) == (
        "1880 ± 40", "1880 ± 42", "1150 ± 110")  # --digits 3 printed 1880 ± 41.8
    assert (pm_text(64.53, 9.03), pm_text(1880.4, 0.0)) == ("64.5 ± 9.0", "1880 ± 0")
    assert ci_text(Stats.of([1100.0, 1210.0, 1150.0], ci=True)) == "[1017, 1290]"  # to the place of 1150 ± 55
    assert (mean_text(Stats.of([10.0, 10.0]), 3, count=True), mean_text(Stats.of([9.0, 10.0]), 3, count=True)) == (
        "10", "9.50")  # a count: a whole mean is a whole number (--digits 3 printed 10.0)
    assert mean_pm_std(Stats.of([None, float("nan")])) == "-" and mean_text(Stats.of([])) == "-"
    assert mean_text(Stats.of([6400.0, 6500.0])) == "6450"
    assert (millions(1_510_032), millions(533_505), millions(None)) == ("1.51", "0.534", "-")
    assert time_to_quality_texts(TimeToQuality(10.0, 0, 0, None, None)) == ("-", "-", "-", "-")
    assert time_to_quality_texts(TimeToQuality(10.0, 0, 2, None, None)) == ("not reached",) * 4
    assert time_to_quality_texts(TimeToQuality(10.0, 2, 3, 1200, 31.0, 29.5)) == (
        "31 (2/3 reached)", "1,200 (2/3 reached)", "31 s / 1,200 batches (2/3 reached)", "29.5 (2/3 reached)")
    assert time_to_quality_texts(TimeToQuality(10.0, 1, 1, 1200, 31.0))[3] == "-"  # runs that did not record it


def test_time_to_quality_of_an_even_count_is_an_evaluation_a_seed_made_not_a_midpoint(tmp_path):
    for seed, (step, wall_s) in enumerate(((1000, 20.0), (1400, 22.0), (1800, 25.0), (600, 30.0))):
        make_run(tmp_path, seed=seed, evaluations=[(step - 200, wall_s - 5, 50.0, wall_s - 6), (step, wall_s, 5.0,
                                                                                              wall_s - 1.5)])
    (row,) = groups_of(tmp_path, fid_target=10.0)[0].rows
    # 600, [1000], 1400, 1800: that seed's evaluation, its batches, wall and CPU seconds
    assert (row.ttq.step, row.ttq.wall_s, row.ttq.cpu_s) == (1000, 20.0, 18.5) and isinstance(row.ttq.step, int)
    groups = groups_of(tmp_path, fid_target=10.0)
    assert "| s to FID<10 | CPU s to FID<10 | batches to FID<10 |" in render(groups, "md")
    assert "| 20 | 18.5 | 1,000 |" in render(groups, "md")
    runs = list(csv.DictReader(io.StringIO(render_runs_csv(groups))))
    assert sorted((r["ttq_step"], r["ttq_wall_s"], r["ttq_cpu_s"]) for r in runs)[0] == ("1000", "20.0", "18.5")



# Tested differences: intervals over seeds and the pairwise tests on FID ---------------------------


def pairs_runs(root, a_fids, b_fids, a="dcgan", b="vanilla"):
    for arch, fids in ((a, a_fids), (b, b_fids)):
        for seed, fid in enumerate(fids):
            make_run(root, arch=arch, seed=seed, fid=fid)
    return root


def pairs_section(md: str) -> list[str]:
    """The rows of a Markdown report's pairwise tests."""
    section = md.split("### Pairwise tests on FID", 1)[1].split("\n\n", 2)[1]
    return [line for line in section.splitlines() if line.startswith("|")][2:]


def test_clearly_separated_architectures_get_a_verdict_in_every_format(tmp_path):
    runs = pairs_runs(tmp_path / "runs", [10.0, 11.0, 12.0, 13.0, 14.0, 15.0], [50.0, 51.0, 52.0, 53.0, 54.0, 55.0])
    groups = groups_of(runs)
    (pair,) = groups[0].pairs
    assert (pair.a.arch, pair.b.arch, pair.test.a_beats_b) == ("dcgan", "vanilla", 1.0)
    assert pair.test.p == pytest.approx(2 / 924) and pair.test.winner == pair.test.a

    assert pairs_section(render(groups, "md")) == [
        "| dcgan | vanilla | 6 vs 6 | 1 | [0.69, 1] | 0.0022 | 0.0022 | **dcgan better** |"]
    (doc,) = json.loads(render(groups, "json"))
    (p,) = doc["pairs"]
    assert (p["a"], p["b"], p["n_a"], p["n_b"], p["verdict"], p["different"]) == (
        "dcgan", "vanilla", 6, 6, "dcgan better", True)
    assert p["p_holm"] == pytest.approx(2 / 924) and doc["statistics"]["interval"].startswith("Student t interval")
    latex_row = r"dcgan & vanilla & 6 vs 6 & 1 & [0.69, 1] & 0.0022 & 0.0022 & \textbf{dcgan better} \\"
    assert latex_row in render(groups, "latex")

    report = write_report([runs], "csv", tmp_path / "out" / "table.csv", figures=False)
    assert report.companions == [tmp_path / "out" / "table-pairs.csv", tmp_path / "out" / "table-runs.csv"]
    (line,) = csv.DictReader(io.StringIO(report.companions[0].read_text()))
    assert (line["a"], line["b"], line["verdict"], line["group"]) == ("dcgan", "vanilla", "dcgan better", "1")
    assert float(line["p"]) == pytest.approx(2 / 924)
    main = list(csv.DictReader(io.StringIO((tmp_path / "out" / "table.csv").read_text())))
    assert [r["arch"] for r in main] == ["dcgan", "vanilla"]  # the table itself keeps one line per row
    # every run's own values beside it, from which anyone can redo the test
    runs_csv = list(csv.DictReader(io.StringIO(report.companions[1].read_text())))
    fids = {arch: [float(r["fid"]) for r in runs_csv if r["arch"] == arch] for arch in ("dcgan", "vanilla")}
    assert fids == {"dcgan": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0], "vanilla": [50.0, 51.0, 52.0, 53.0, 54.0, 55.0]}
    assert [r["seed"] for r in runs_csv[:6]] == ["0", "1", "2", "3", "4", "5"] and runs_csv[0]["status"] == "completed"
    assert [r["fid"] for r in json.loads(render(groups, "json"))[0]["rows"][0]["per_run"]] == fids["dcgan"]


def test_identical_architectures_are_not_distinguishable(tmp_path):
    same = [20.0, 22.0, 25.0, 27.0, 30.0, 31.0]
    groups = groups_of(pairs_runs(tmp_path, same, same))
    (pair,) = groups[0].pairs
    assert pair.test.a_beats_b == 0.5 and pair.test.p == pytest.approx(1.0) and not pair.test.too_few
    assert pairs_section(render(groups, "md")) == [
        "| dcgan | vanilla | 6 vs 6 | 0.5 | [0.22, 0.78] | 1 | 1 | not distinguishable with 6 vs 6 seeds |"]
    assert "not that they are equal" in render(groups, "md")
    assert json.loads(render(groups, "json"))[0]["pairs"][0]["verdict"] == "not distinguishable with 6 vs 6 seeds"


def test_two_seeds_each_are_too_few_for_a_verdict_and_the_report_says_why(tmp_path):
    groups = groups_of(pairs_runs(tmp_path, [10.0, 11.0], [50.0, 51.0]))
    (pair,) = groups[0].pairs
    assert pair.test.a_beats_b == 1.0 and pair.test.too_few and pair.test.winner is None
    md = render(groups, "md")
    assert pairs_section(md) == [
        "| dcgan | vanilla | 2 vs 2 | 1 | [0.39, 1] | 0.33 | 0.33 | not distinguishable with 2 vs 2 seeds (too few) |"]
    assert "the smallest it can be is 0.33 with 2 vs 2 seeds. A verdict takes at least 4 seeds per architecture." in md
    (p,) = json.loads(render(groups, "json"))[0]["pairs"]
    assert p["too_few"] and p["p_floor"] == pytest.approx(1 / 3)
    assert "(too few)" in render(groups, "latex")


def test_every_metric_has_a_t_interval_over_three_seeds_or_more(tmp_path):
    for seed, fid in enumerate((10.0, 12.0, 17.0)):
        make_run(tmp_path, seed=seed, fid=fid)
    for seed, fid in enumerate((8.0, 9.0)):
        make_run(tmp_path, arch="dcgan", seed=seed, fid=fid)
    groups = groups_of(tmp_path)
    fid = only_row(groups, "vanilla").metrics["fid"]
    half = 4.302653 * math.sqrt(13.0 / 3)  # t(0.975, 2) times the standard error of 10, 12, 17
    assert (fid.ci_low, fid.ci_high) == pytest.approx((13.0 - half, 13.0 + half), rel=1e-6)
    md = render(groups, "md")
    assert "| FID | FID 95% CI |" in md and "| 8.50 ± 0.71 | - |" in md  # two seeds have no interval
    assert f"| 13.0 ± 3.6 | [{fid.ci_low:.1f}, {fid.ci_high:.1f}] |" in md  # the interval to the place of 13.0 ± 3.6
    assert "Student t interval of the mean over seeds" in md and "'-' under 3 seeds" in md
    row = {r["arch"]: r for r in csv.DictReader(io.StringIO(render(groups, "csv")))}["vanilla"]
    assert float(row["fid_ci_low"]) == pytest.approx(fid.ci_low) and row["kid_ci_high"] != ""
    (doc,) = json.loads(render(groups, "json"))
    assert doc["rows"][1]["precision"]["ci_low"] == pytest.approx(0.8)


def test_a_spread_of_hundreds_is_written_without_a_power_of_ten(tmp_path):
    pairs_runs(tmp_path, [600.0, 1700.0], [900.0, 1000.0])
    md = render(groups_of(tmp_path), "md")
    assert "| 1150 ± 780 |" in md and "e+02" not in md


# Side-by-side step times and contention ---------------------------------------------------------


def save_step_times(folder, wide=(), archs=("dcgan", "vanilla"), batch_size=64):
    def times(arch):
        steady = [10.0 + 0.1 * i for i in range(20)]
        return [t * (1 + 0.2 * i) for i, t in enumerate(steady)] if arch in wide else steady

    StepTimes(created="2026-12-01T00:00:00Z", device="Test CPU", threads=2, precision="fp32", rounds=4,
              steps_per_round=5, warmup_steps=3,
              archs={a: ArchStepTimes(batch_size=batch_size, times_ms=times(a),
                                       round_medians_ms=[10.5, 20.0] if a in wide else [10.5, 10.6])
                     for a in archs}).save(folder)


def contended(record, share=0.5):
    record.contention = Contention(cpu_s=100.0 * share * 2, wall_s=100.0, threads=2, load_start=3.5, load_end=4.0)
    return record


def test_side_by_side_step_times_replace_the_runs_own_and_wide_ones_are_flagged(tmp_path):
    folder = tmp_path / "compare-x"
    for arch, step_ms in (("dcgan", 300.0), ("vanilla", 17.0)):
        for seed in range(2):
            make_run(folder, arch=arch, seed=seed, step_ms=step_ms)
    save_step_times(folder, wide=("vanilla",))
    groups = groups_of(folder)
    assert groups[0].side_by_side.folder == folder
    dcgan, vanilla = only_row(groups, "dcgan"), only_row(groups, "vanilla")
    assert dcgan.side_by_side.median == pytest.approx(10.95)
    assert not dcgan.side_by_side_wide and vanilla.side_by_side_wide
    md = render(groups, "md")
    assert "| 10.95 (10.2-11.7) |" in md and "| 300 |" not in md
    vanilla_line = md.split("| vanilla |", 1)[1].split("\n")[0]
    assert " † |" in vanilla_line and "†" not in md.split("| dcgan |", 1)[1].split("\n")[0]
    assert "timed side by side (compare-x/step_times.json: 4 rounds of 5 steps" in md
    assert "† side-by-side step times whose rounds disagree" in md and ": vanilla;" in md
    assert r"\dag{}" in render(groups, "latex", columns=["arch", "step_ms"])
    rows = {r["arch"]: r for r in csv.DictReader(io.StringIO(render(groups, "csv")))}
    assert [rows[a]["step_ms_side_by_side_wide"] for a in ("dcgan", "vanilla")] == ["False", "True"]
    assert rows["dcgan"]["step_ms_median"] == "300.0"  # the runs' own median keeps its column
    (doc,) = json.loads(render(groups, "json"))
    assert doc["rows"][1]["step_ms_side_by_side"]["wide"] and doc["step_times"]["rounds"] == 4


def test_runs_without_step_times_or_contention_render_as_before(tmp_path):
    make_run(tmp_path / "compare-x", arch="dcgan", step_ms=300.0)
    md = render(groups_of(tmp_path), "md")
    assert "| 300 |" in md and "side by side" not in md and "contended" not in md and "†" not in md


def test_step_times_that_do_not_cover_the_table_are_not_shown(tmp_path):
    folder = tmp_path / "compare-x"
    make_run(folder, arch="dcgan", step_ms=300.0)
    make_run(folder, arch="vanilla", step_ms=17.0)
    save_step_times(folder, archs=("dcgan",))
    make_run(tmp_path / "elsewhere", arch="dcgan", seed=1, step_ms=280.0)
    (group,) = groups_of(folder)
    assert group.side_by_side is None and "it does not time vanilla" in render([group], "md")
    (group,) = groups_of(tmp_path)
    assert "the table's runs come from 2 folders" in render([group], "md")
    save_step_times(folder, batch_size=128)
    assert "it timed batches of 128, the runs trained on 64" in render(groups_of(folder), "md")


def test_contended_runs_are_counted_and_explained_in_every_format(tmp_path):
    make_run(tmp_path, contended(make_record(seed=0)))
    make_run(tmp_path, contended(make_record(seed=1), share=0.9))  # 90% of its threads: not contended
    make_run(tmp_path, make_record(seed=2))  # no contention record (older run)
    groups = groups_of(tmp_path)
    assert only_row(groups, "vanilla").contended == 1
    md = render(groups, "md")
    assert "| 3 completed; 1 contended ‡ |" in md
    assert "‡ 1 run(s) contended (vanilla 1): they got less than 75% of their threads' CPU time" in md
    assert r"3 completed; 1 contended \ddag{}" in render(groups, "latex", columns=["arch", "status"])
    assert r"\ddag{} 1 run(s) contended" in render(groups, "latex")
    (row,) = csv.DictReader(io.StringIO(render(groups, "csv")))
    assert row["contended_runs"] == "1"
    (r,) = json.loads(render(groups, "json"))[0]["rows"]
    assert r["contended_runs"] == 1 and r["cpu_share"] == [0.5, 0.9, None]


# Paper-ready tables: columns, digits, the LaTeX float, provenance --------------------------------


def test_columns_and_digits_choose_the_table(three_archs):
    groups = groups_of(three_archs)
    md = render(groups, "md", columns=("arch", "fid", "fid_ci", "kid_ci"), digits=3)
    table = [line for line in md.split("### Pairwise", 1)[0].splitlines() if line.startswith("|")]
    assert table[0] == "| arch | FID | FID 95% CI | KID×10³ 95% CI |"
    assert table[2] == "| dcgan | 8.50 ± 0.71 | - | - |"  # two seeds: no interval
    assert "| dcgan | vanilla | 2 vs 2 | 1.00 | [0.386, 1.00] | 0.333 | 1.00 |" in md  # the tests keep the digits too
    with pytest.raises(UsageError, match=r"unknown column 'fidd' \(did you mean 'fid'\?\); choose from: arch, "):
        write_report([three_archs], "md", columns=["arch", "fidd"])
    with pytest.raises(UsageError, match="--digits must be between 1 and 15"):
        write_report([three_archs], "md", digits=0)


def test_report_options_for_papers_parse_and_refuse_in_one_line(capsys):
    args = report_parser().parse_args(["report", "runs/", "--columns", "arch, fid,fid_ci", "--digits", "3",
                                       "--caption", "FID on MNIST", "--label", "tab:mnist"])
    assert (args.columns, args.digits, args.caption, args.label) == (("arch", "fid", "fid_ci"), 3, "FID on MNIST",
                                                                    "tab:mnist")
    for bad, message in ((["--columns", "arch,nope"], "unknown column 'nope'"), (["--digits", "0"], "between 1"),
                         (["--columns", "fid,fid"], "named twice")):
        with pytest.raises(SystemExit) as info:
            report_parser().parse_args(["report", "runs/", *bad])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_latex_is_a_complete_float_that_fits_a_page(three_archs):
    groups = groups_of(three_archs)
    tex = render(groups, "latex")
    assert tex.count(r"\begin{table}[tbp]") == 2 and tex.count(r"\end{table}") == 2  # the table and its tests
    assert r"\caption{GAN architectures on MNIST, Test CPU: 600 steps $\cdot$ batch 64" in tex
    assert r"\label{tab:gan-bench}" in tex and r"\label{tab:gan-bench-pairs}" in tex
    assert r"\caption{Pairwise tests on FID, for Table~\ref{tab:gan-bench}}" in tex
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    assert spec == "lrrrrrr" and len(LATEX_COLUMNS) <= 7  # a standard article's text width holds these
    header = tex.split(r"\toprule", 1)[1].split(r"\midrule", 1)[0].strip()
    assert header == r"arch & runs & FID & FID 95\% CI & prec. & recall & s to FID\textless{}400 \\"
    custom = render(groups, "latex", caption="FID after 600 steps", label="tab:mnist")
    assert r"\caption{FID after 600 steps}" in custom and r"\label{tab:mnist}" in custom
    assert r"Test CPU $\cdot$ 600 steps" in custom.split(r"\end{tabular}", 1)[1]  # the protocol moves under it


def test_latex_labels_every_table_when_there_are_several(tmp_path):
    make_run(tmp_path, train_subset=10_000)
    make_run(tmp_path, train_subset=None)
    tex = render(groups_of(tmp_path), "latex", caption="MNIST")
    assert r"\label{tab:gan-bench-1}" in tex and r"\label{tab:gan-bench-2}" in tex
    assert r"\caption{MNIST (1 of 2)}" in tex and r"\caption{MNIST (2 of 2)}" in tex


def test_a_plan_command_with_out_reproduces_verbatim_in_markdown_and_latex(tmp_path):
    command = ["compare", "--arch", "dcgan,vanilla", "--seeds", "2", "--steps", "600", "--out", "my runs/today"]
    plan = Plan.create(tmp_path / "my runs", PlanKind.COMPARE, ["dcgan", "vanilla"], [0, 1], PlanSettings(steps=600),
                       command=command)
    for arch in ("dcgan", "vanilla"):
        make_run(plan.folder, arch=arch)
    groups = groups_of(plan.folder)
    own = "python -m bench report 'my runs/today' --format latex --out paper/table.tex"
    expected = "python -m bench compare --arch dcgan,vanilla --seeds 2 --steps 600 --out 'my runs/today'"
    assert how_made(render(groups, "md", command=own)) == [expected, own]
    tex = render(groups, "latex", command=own)
    assert f"%   {expected}\n%   {own}\n" in tex


# The quality-for-compute figure -------------------------------------------------------------------


def test_fid_for_compute_puts_every_seed_on_shared_axes_that_the_data_choose(tmp_path):
    from matplotlib.figure import Figure

    from bench.report.figures import draw_fid_for_compute, figure_lines, references_of

    for arch, fids in (("dcgan", (30.0, 12.0)), ("vanilla", (40.0, 25.0))):
        for seed in range(2):
            make_run(tmp_path, arch=arch, seed=seed,
                     evaluations=[(100, 5.0, fids[0] + seed), (1000, 50.0, fids[1] + seed), (4000, 200.0, fids[1])])
    nameless = make_record(arch="vanilla", seed=2, evaluations=[(100, 5.0, 45.0), (4000, 210.0, 26.0)])
    nameless.flops_per_step = None  # an older run: drawn against time only
    make_run(tmp_path, nameless)
    groups = groups_of(tmp_path, fid_target=20.0)
    fig = Figure()
    ax_flops, ax_time = draw_fid_for_compute(fig, figure_lines(groups), references_of(groups))
    assert len(ax_flops.lines) == 4 + 1 and len(ax_time.lines) == 5 + 1  # one line per seed, and the target
    colours = [line.get_color() for line in ax_time.lines[:5]]
    assert colours[0] == colours[1] != colours[2] == colours[3] == colours[4]  # seeds share their row's colour
    assert max(ax_flops.lines[0].get_xdata()) == 4000 * 1_234_000_000  # step x FLOPs per step
    assert ax_flops.get_xscale() == "log" and ax_time.get_xscale() == "log"  # 40x: orders of magnitude
    assert ax_flops.get_yscale() == "linear"  # FID from 12 to 45 does not span them
    low, high = ax_flops.get_ylim()
    assert low > 10 and high < 50  # noise vs test (400) and train vs test (0.5) do not stretch it
    texts = [t.get_text() for t in ax_flops.texts]
    assert texts == ["target: FID 20", "↓ train vs test: FID 0.5", "↑ noise vs test: FID 400"]
    assert draw_fid_for_compute(Figure(), [], references_of(groups)) is None


def test_choose_scale_is_log_only_over_orders_of_magnitude():
    from bench.report.figures import choose_scale

    assert choose_scale([1.0, 19.0]) == "linear" and choose_scale([1.0, 20.0, float("nan")]) == "log"
    assert choose_scale([0.0, 100.0]) == "linear" and choose_scale([]) == "linear"


def test_runs_on_two_evaluation_scales_never_share_a_table_and_one_scale_puts_all_in_one(tmp_path):
    make_run(tmp_path / "own", arch="vanilla", seed=0, fid=12.0)
    big = make_record(arch="dcgan", seed=0, fid=30.0)
    big.config.image_size = 32
    big.metrics.protocol["real_image_size"] = 32
    big.references["train_vs_test"] = dataclasses.replace(big.references["train_vs_test"], fid=1.5)
    make_run(tmp_path / "own", record=big)
    groups = group_runs(load_runs([tmp_path / "own"]))
    assert sorted((g.rows[0].arch, g.protocol["eval.real_image_size"]) for g in groups) == [("dcgan", 32),
                                                                                             ("vanilla", 28)]
    md = render(groups, "md")
    assert "· scored at 28x28 ·" in md and "· scored at 32x32 ·" in md
    # The 28x28 architecture brought to the 32x32 scale (--eval-scale 32) shares dcgan's table and pair test.
    at_32 = make_record(arch="vanilla", seed=0, fid=9.0)
    at_32.config.eval_scale = 32
    at_32.metrics.protocol["real_image_size"] = 32
    at_32.references = big.references
    make_run(tmp_path / "one", record=at_32)
    make_run(tmp_path / "one", record=big)
    (group,) = group_runs(load_runs([tmp_path / "one"]))
    assert sorted(row.arch for row in group.rows) == ["dcgan", "vanilla"] and len(group.pairs) == 1
    md = render([group], "md")
    assert "· scored at 32x32 ·" in md and "reference train vs test: FID 1.5" in md


def test_times_taken_in_a_stack_or_beside_other_runs_are_never_shown_unmarked_beside_single_ones(tmp_path):
    for seed in range(2):
        stacked = make_record(arch="vanilla", seed=seed, step_ms=40.0)
        stacked.stack = StackInfo(id="vanilla-abc", seeds=[0, 1], size=2, runs=["a", "b"], step_ms_per_seed=20.0)
        make_run(tmp_path, stacked)
        shared = make_record(arch="lsgan", seed=seed, step_ms=25.0)
        shared.config.parallel_runs = 2
        make_run(tmp_path, shared)
        make_run(tmp_path, arch="wgan", seed=seed, step_ms=10.0)
    groups = groups_of(tmp_path)
    md = render(groups, "md")
    cells = {arch: md.split(f"| {arch} |", 1)[1].split("\n")[0] for arch in ("vanilla", "lsgan", "wgan")}
    assert "| 40 § |" in cells["vanilla"] and "| 25 § |" in cells["lsgan"] and "§" not in cells["wgan"]
    assert "§ timed while sharing the machine (lsgan: 2 runs at once; vanilla: stack of 2 seeds)" in md
    rows = {r["arch"]: r for r in csv.DictReader(io.StringIO(render(groups, "csv")))}
    assert [rows[a]["shared"] for a in ("vanilla", "lsgan", "wgan")] == ["stack of 2 seeds", "2 runs at once", ""]


def test_a_terminal_80_columns_wide_shows_what_matters_first_and_breaks_no_number(tmp_path, monkeypatch, capsys):
    from bench import console

    fids_of = {"dcgan": (80.5, 90.25, 85.0), "vanilla": (1100.5, 1210.25, 1150.0), "wgan_gp": (500.0, 520.0, 510.0)}
    for arch, fids in fids_of.items():
        for seed, fid in enumerate(fids):
            make_run(tmp_path, arch=arch, seed=seed, fid=fid, images_per_s=3661.0, evaluations=[(600, 60.0, fid)])
    monkeypatch.setattr(console.out, "width", 80)
    print_comparison(groups_of(tmp_path, fid_target=600.0))
    out = capsys.readouterr().out
    first = out.split(" (continued)", 1)[0]  # the first table: architecture, runs, FID with interval, time to quality
    assert re.search(r"arch +runs +FID +FID 95% CI +to FID<600", first)
    for arch, fid in (("dcgan", "85.2 ± 4.9"), ("vanilla", "1154 ± 55"), ("wgan_gp", "510 ± 10")):
        (line,) = [line for line in first.splitlines() if line.lstrip().startswith(arch)]
        assert fid in line and len(line) <= 80
    assert "(continued)" in out and out.count("3661") + out.count("3,661") == 3  # img/s, each whole
    assert all(len(line) <= 80 for line in out.splitlines() if line.lstrip().startswith(("dcgan", "vanilla", "wgan")))


def test_every_figure_names_every_architecture_of_its_data(tmp_path, monkeypatch):
    from bench.report import figures

    drawn = {}

    def keep(fig, path):
        drawn[path.stem.split("-", 1)[1]] = fig
        return path

    monkeypatch.setattr(figures, "_save", keep)
    for arch in ("dcgan", "vanilla", "wgan_gp"):
        for seed in range(2):
            record = make_record(arch=arch, seed=seed, evaluations=[(200, 20.0, 300.0 + seed), (600, 60.0, 90.0)])
            record.flops_per_step = None if arch == "wgan_gp" else record.flops_per_step  # as for wgan-gp's penalty
            make_run(tmp_path / "runs", record)
    figures.write_figures(groups_of(tmp_path / "runs"), tmp_path / "r.md")
    assert sorted(drawn) == ["fid-vs-batches", "fid-vs-compute", "fid-vs-time", "losses", "samples"]
    for name, fig in drawn.items():
        if name == "samples":
            named = [ax.get_title() for ax in fig.axes]
        else:
            named = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        for arch in ("dcgan", "vanilla", "wgan_gp"):
            assert any(arch in text for text in named), f"{name} does not name {arch}: {named}"
    assert len([ax for ax in drawn["losses"].axes if ax.lines]) == 3  # one panel, and one y-axis, each
    assert "no FLOP count: wgan_gp" in [t.get_text() for t in drawn["fid-vs-compute"].axes[0].texts]
    assert {ax.get_yscale() for name in ("fid-vs-time", "fid-vs-batches") for ax in drawn[name].axes} == {"linear"}


def test_pooled_tables_keep_one_colour_per_architecture_and_one_fid_axis_per_scale(tmp_path, monkeypatch):
    from bench.report import figures

    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.setdefault(path.stem.split("-", 1)[1], fig))
    for folder, scale, budget_fid in (("a", None, 300.0), ("b", 32, 90.0)):
        for arch in ("dcgan", "vanilla"):
            for seed in range(2):
                record = make_record(arch=arch, seed=seed, evaluations=[(200, 20.0, 3 * budget_fid),
                                                                        (600, 60.0, budget_fid + seed)])
                if scale is not None:  # scored at 32x32: a protocol of its own, so a table of its own
                    record.metrics.protocol["real_image_size"] = scale
                make_run(tmp_path / folder, record)
    groups = groups_of(tmp_path / "a") + groups_of(tmp_path / "b")
    assert [g.scale for g in groups] == [28, 32]
    lines = figures.figure_lines(groups)
    colour = {line.label: line.color for line in lines}
    assert colour["dcgan [1]"] == colour["dcgan [2]"] != colour["vanilla [1]"] == colour["vanilla [2]"]
    assert len({(line.color, line.marker, line.linestyle) for line in lines}) == 4  # every line told apart
    figures.write_figures(groups, tmp_path / "r.md")
    for name in ("fid-vs-time", "fid-vs-batches"):
        left, right = drawn[name].axes  # one FID axis per scale, each with its own tables' lines only
        assert "28x28" in left.get_ylabel() and "32x32" in right.get_ylabel()
        assert [t.get_text() for t in left.get_legend().get_texts()] == ["dcgan [1]", "vanilla [1]"]
        assert [t.get_text() for t in right.get_legend().get_texts()] == ["dcgan [2]", "vanilla [2]"]
    assert len(drawn["fid-vs-compute"].axes) == 4 and len(drawn["fid-vs-compute"].subfigs) == 2
