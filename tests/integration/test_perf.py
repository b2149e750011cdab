"""``bench perf`` end to end, and the allocator setting every contender runs on.

That the suite's steps compute the study's math is tested with the architectures
(tests/unit/test_architectures.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

import pytest

from bench.cli import build_parser
from bench.data import FILES
from bench.errors import UsageError
from bench.perf.measure import PerfConfig
from bench.perf.study import STUDY_REFERENCES, study_mnist_root

from helpers import architecture_names, run_cli


def perf_args(*argv: str) -> argparse.Namespace:
    return build_parser("perf").parse_args(["perf", *argv])


def test_perf_runs_end_to_end_and_writes_its_record(tmp_path, capsys):
    out = tmp_path / "perf.json"
    args = perf_args(
        "--arch", "vanilla", "--precision", "bf16", "--rounds", "1", "--batches", "4", "--warmup", "1",
        "--train-subset", "256", "--peak-seconds", "0.05", "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    for label in ("study's loop (as published)", "runner, bf16 autocast", "bare loop (preloaded)"):
        assert label in printed
    assert f"results: {out}" in printed
    record = json.loads(out.read_text())
    assert {"arch", "precision", "batch_size", "rounds", "batches_per_round", "warmup_batches",
            "matmul_peak_gflops", "contenders", "runner_overhead", "env"} <= record.keys()
    assert set(record["contenders"]) == {"study", "runner_fp32", "runner_bf16", "bare_fp32", "bare_bf16"}
    for c in record["contenders"].values():
        assert len(c["batches_per_s"]) == 1 and c["batches_per_s_median"] > 0
        assert c["flops_per_step"] > 0 and c["share_of_peak"] > 0
        assert {"median", "min", "max"} == c["vs_study"].keys()
    assert record["contenders"]["study"]["vs_study"]["median"] == 1.0
    assert set(record["runner_overhead"]) == {"fp32", "bf16"}
    assert {"vs_bare_loop", "outside_batch_timer"} == record["runner_overhead"]["bf16"].keys()
    assert {"before", "after", "cpus"} == record["load_average"].keys()
    assert set(record["matmul_peak_gflops"]) == {"fp32", "bf16"}
    raw = tmp_path / "cache" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES)  # uncompressed, nothing left half-written


def test_perf_refuses_architectures_without_a_study_loop():
    with pytest.raises(UsageError, match="dcgan, vanilla, wgan"):
        PerfConfig(arch="lsgan").validate()
    assert set(STUDY_REFERENCES) <= set(architecture_names())


@pytest.mark.parametrize("seconds", ["inf", "nan", "0", "-1"])
def test_perf_refuses_a_peak_time_that_is_not_a_finite_positive_number(seconds, capsys):
    """An infinite --peak-seconds would measure the matmul peak forever."""
    with pytest.raises(SystemExit) as exc:
        perf_args("--arch", "vanilla", "--peak-seconds", seconds)
    assert exc.value.code == 2
    assert "--peak-seconds: must be a positive number" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--peak-seconds"):
        PerfConfig(arch="vanilla", peak_seconds=float(seconds)).validate()


def test_perf_refuses_an_unwritable_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match="--cache-dir"):
        study_mnist_root(blocker / "cache")


FAULTS_SCRIPT = """
import json, resource, sys, torch
from bench.environment import environment, tune_allocator
from bench.architectures.vanilla import Vanilla, VanillaConfig
setting = tune_allocator()
torch.set_num_threads(1)
torch.manual_seed(0)
gan = Vanilla(VanillaConfig(), torch.device("cpu"))
real = torch.rand(64, 1, 28, 28) * 2 - 1
def steps(n):
    for i in range(n):
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            gan.train_step(real, i)
steps(10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps(20)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"setting": setting, "env": environment(torch.device("cpu"))["allocator"], "faults": faults}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's")
def test_tuned_allocator_stops_the_page_faults_of_every_step():
    """With glibc's defaults each bf16 vanilla step faults in its fresh weight casts and
    gradients again (hundreds of minor faults per step); with freed memory kept, almost none."""

    def measure(**env):
        out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", **env})
        return json.loads(out.stdout.strip().splitlines()[-1])

    tuned = measure()
    assert tuned["setting"].startswith("glibc, freed memory kept") and tuned["env"] == tuned["setting"]
    assert tuned["faults"] < 20
    default = measure(GAN_BENCH_MALLOC="default")
    assert default["setting"] == default["env"] == "default"
    assert default["faults"] > 5 * max(tuned["faults"], 1)


# bench perf --seeds ------------------------------------------------------------------------------


def test_perf_seeds_measures_a_stack_parallel_runs_and_one_after_another(tmp_path):
    out = tmp_path / "seeds.json"
    proc = run_cli("perf", "--arch", "vanilla", "--seeds", "2", "--batches", "3", "--warmup", "1", "--rounds", "2",
                   "--train-subset", "500", "--jobs", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "vanilla: 2 seeds on" in proc.stdout and f"results: {out}" in proc.stdout
    record = json.loads(out.read_text())
    assert record["kind"] == "seeds" and record["seeds"] == [0, 1] and record["stack_refused"] is None
    contenders = record["contenders"]
    assert list(contenders) == ["stack", "jobs", "sequential"]
    assert contenders["jobs"]["processes"] == 2 and contenders["stack"]["processes"] == 1
    for c in contenders.values():
        assert len(c["rounds"]) == 2 and all(v > 0 for v in c["rounds"])
        assert c["seed_batches_per_s"]["min"] <= c["seed_batches_per_s"]["median"] <= c["seed_batches_per_s"]["max"]
        assert c["peak_memory_bytes"] > 2**20
    assert set(record["ratios"]) == {"stack_vs_sequential", "jobs_vs_sequential"}
    ratio = record["ratios"]["jobs_vs_sequential"]
    expected = [j / s for j, s in zip(contenders["jobs"]["rounds"], contenders["sequential"]["rounds"], strict=True)]
    assert ratio["min"] == pytest.approx(min(expected)) and ratio["max"] == pytest.approx(max(expected))


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1"], "--seeds must be between 2 and 256"),
    (["--jobs", "2"], "--jobs goes with --seeds"),
    (["--seeds", "2", "--cache-dir", "x"], "--cache-dir apply to the study comparison"),
    (["--seeds", "2", "--jobs", "0"], "--jobs must be at least 1"),
    (["--seeds", "2", "--seed", "4294967295"], "--seed plus --seeds must be between 0 and 4294967295"),
])
def test_perf_seeds_refuses_what_it_cannot_measure(tmp_path, args, message):
    proc = run_cli("perf", "--arch", "vanilla", "--json", str(tmp_path / "x.json"), *args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "x.json").exists()
