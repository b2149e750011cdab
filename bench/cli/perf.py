"""``python -m bench perf``: the study's loop, the suite's runner and a bare loop, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import console, tables
from bench.cli.options import parse_int, positive_float
from bench.config import PRECISIONS, SEED_LIMIT
from bench.errors import UsageError
from bench.perf.measure import PerfConfig, machine_was_busy, measure
from bench.perf.seeds import SeedsConfig, measure_seeds
from bench.perf.study import DEFAULT_CACHE, STUDY_REFERENCES
from bench.registry import default_registry
from bench.storage import write_json


DESCRIPTION = ("Train one architecture the study's way (torchvision DataLoader, PIL transforms, .item() every "
               "batch), through the suite's runner and in a bare loop, alternating rounds, and compare batches/s, "
               "FLOPs and the share of this machine's matmul peak. With --seeds S: train S seeds as one stack, as "
               "--jobs parallel runs and one after another, and compare seed-batches/s and peak memory.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True, help=f"one with a study loop: {', '.join(sorted(STUDY_REFERENCES))}")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16 adds the runner under bf16 autocast as a contender (the study stays fp32)")
    p.add_argument("--rounds", type=parse_int, default=3, help="rounds of every contender, alternating (default 3)")
    p.add_argument("--batches", type=parse_int, metavar="N",
                   help="timed batches per contender and round (default 200, 30 for dcgan; with --seeds the "
                        "architecture's timed_batches: 100, 20 for dcgan and sngan)")
    p.add_argument("--warmup", type=parse_int, default=10, metavar="N",
                   help="batches left out at the start of each (default 10)")
    p.add_argument("--batch-size", type=parse_int, help="default: the architecture's (64)")
    p.add_argument("--seed", type=parse_int, default=0,
                   help=f"seed of the networks and data order, 0 to {SEED_LIMIT - 1} (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: every contender runs there")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="the runner replays its step as a CUDA graph (graph-safe architectures)")
    p.add_argument("--train-subset", type=parse_int, metavar="N",
                   help="draw batches from the first N images of the fixed shuffle only")
    p.add_argument("--cache-dir", metavar="DIR",
                   help=f"where the study's loader finds MNIST uncompressed (default {DEFAULT_CACHE})")
    p.add_argument("--peak-seconds", type=positive_float, default=1.0, metavar="S",
                   help="time spent measuring each matmul peak (default 1)")
    p.add_argument("--json", metavar="PATH",
                   help="where to write the results (default results/perf-<arch>.json, with --seeds "
                        "results/perf-<arch>-seeds<S>.json)")
    seeds = p.add_argument_group("several seeds at once")
    seeds.add_argument("--seeds", type=parse_int, metavar="S",
                       help="measure S seeds (--seed onwards) as one stack, as parallel runs and one after another")
    seeds.add_argument("--jobs", type=parse_int, metavar="N",
                       help="with --seeds: processes of the parallel-runs contender (default: one per free CPU, at "
                            "most S, as bench compare chooses on the CPU)")


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, write the JSON record."""
    if args.seeds is not None:
        return _seeds(args)
    if args.jobs is not None:
        raise UsageError("--jobs goes with --seeds")
    cfg = PerfConfig(
        arch=args.arch, precision=args.precision, rounds=args.rounds, batches=args.batches, warmup=args.warmup,
        batch_size=args.batch_size, seed=args.seed, train_subset=args.train_subset, cache_dir=args.cache_dir,
        peak_seconds=args.peak_seconds, json=args.json, device=args.device, cuda_graphs=args.cuda_graphs,
    )
    cfg.validate()
    path = Path(cfg.json or f"results/perf-{cfg.arch}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = measure(cfg)
    tables.print_perf(record)
    if machine_was_busy(record):
        console.warn("other work was running on this machine (load average, or rounds that disagree by more "
                     "than 1.5x): the numbers are skewed; rerun when it is idle, or with more --rounds")
    write_json(path, record)
    console.out.print(f"results: {path}")
    return 0


def _seeds(args: argparse.Namespace) -> int:
    """``--seeds S``: the seeds as one stack, as parallel runs and one after another."""
    given = [flag for flag, value in (("--cache-dir", args.cache_dir), ("--peak-seconds", args.peak_seconds != 1.0))
             if value]
    if given:
        raise UsageError(f"{', '.join(given)} apply to the study comparison, not to --seeds")
    spec = default_registry().load(args.arch)  # an unknown name: one line, before any process starts
    cfg = SeedsConfig(
        arch=args.arch, seeds=args.seeds, batches=args.batches or spec.timed_batches, warmup=args.warmup,
        rounds=args.rounds, jobs=args.jobs, batch_size=args.batch_size, device=args.device, precision=args.precision,
        cuda_graphs=args.cuda_graphs, train_subset=args.train_subset, seed=args.seed,
    )
    cfg.validate()
    path = Path(args.json or f"results/perf-{args.arch}-seeds{args.seeds}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = measure_seeds(cfg)
    tables.print_perf(record)
    spread = max(c["seed_batches_per_s"]["max"] / c["seed_batches_per_s"]["min"]
                 for c in record["contenders"].values())
    if spread > 1.5:
        console.warn(f"rounds disagree by up to {spread:.2f}x: other work was running on this machine; rerun when "
                     "it is idle, or with more --rounds")
    write_json(path, record)
    console.out.print(f"results: {path}")
    return 0
