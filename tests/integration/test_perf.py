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


KEPT_SCRIPT = """
import ctypes, json, torch
from bench.environment import environment, tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
setting = tune_allocator()
block = torch.empty(64 << 20, dtype=torch.uint8)
mapped = libc.mallinfo2().hblkhd
del block
print(json.dumps({"setting": setting, "env": environment(torch.device("cpu"))["allocator"],
                  "mapped": mapped, "kept": libc.mallinfo2().fordblks}))
"""


def _glibc_at_least(version: tuple[int, int]) -> bool:
    name, found = platform.libc_ver()
    return name == "glibc" and tuple(int(part) for part in found.split(".")[:2]) >= version


@pytest.mark.skipif(not _glibc_at_least((2, 33)), reason="the allocator setting is glibc's (mallinfo2 is 2.33's)")
def test_tuned_allocator_keeps_freed_memory_for_the_next_step():
    """glibc maps a block this size on its own and hands it back to the kernel when freed, so a
    training step's fresh gradients and casts would fault their pages in again on every step.
    Tuned, the block comes from the heap and stays there once freed. Reads glibc's own
    accounting (mallinfo2), not page-fault counts, which the kernel's NUMA balancing and
    huge pages inflate on some machines."""

    def measure(**env):
        out = subprocess.run([sys.executable, "-c", KEPT_SCRIPT], capture_output=True, text=True, check=True,
                             env={**os.environ, **env})
        return json.loads(out.stdout.strip().splitlines()[-1])

    block = 64 << 20
    tuned = measure()
    assert tuned["setting"].startswith("glibc, freed memory kept") and tuned["env"] == tuned["setting"]
    assert tuned["mapped"] < block <= tuned["kept"]
    default = measure(GAN_BENCH_MALLOC="default")
    assert default["setting"] == default["env"] == "default"
    assert default["mapped"] >= block > default["kept"]


# bench perf --seeds ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["vanilla", "dcgan"])
def test_perf_seeds_times_as_many_batches_as_the_architecture_asks(arch, tmp_path, monkeypatch):
    """The default batch count is the spec's ``timed_batches``: perf picks no architecture by name."""
    from bench.cli import perf
    from bench.registry import default_registry

    class Measured(Exception):
        pass

    def measure(cfg):
        raise Measured(cfg.batches)

    monkeypatch.setattr(perf, "measure_seeds", measure)
    args = perf_args("--arch", arch, "--seeds", "2", "--json", str(tmp_path / "seeds.json"))
    with pytest.raises(Measured) as measured:
        args.func(args)
    assert measured.value.args == (default_registry().load(arch).timed_batches,)
    assert default_registry().load("dcgan").timed_batches < default_registry().load("vanilla").timed_batches


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
