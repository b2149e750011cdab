"""``bench perf --seeds S``: S seeds trained three ways, side by side: as one stack, as ``--jobs``
parallel runs, and one after another.

Every contender trains in processes of its own, spawned fresh for each round, so each one's
peak memory is its own (the resident set on the CPU, the allocator's peak on CUDA) and none
inherits another's warm caches. In each process every seed is built as a run of that seed
builds it, takes ``warmup`` untimed steps, waits at a barrier for its fellow processes, then
times ``batches`` steps. A contender's seed-batches per second are ``S * batches`` over the
longest of its processes' timed spans. Rounds rotate the order of the contenders, so load that
comes and goes falls on all of them; the ratios against one-after-another are taken within
each round.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bench.config import check_seed
from bench.device import autocast, peak_memory_bytes, resolve_device
from bench.errors import UsageError
from bench.machine import free_cpus, load_average
from bench.perf.measure import median_min_max
from bench.storage import utc_iso

#: The contenders, in the order of the first round.
CONTENDERS = ("stack", "jobs", "sequential")
MAX_SEEDS = 256


@dataclass(frozen=True)
class SeedsConfig:
    """What ``bench perf --seeds`` measures."""

    arch: str
    seeds: int
    batches: int = 100
    warmup: int = 10
    rounds: int = 3
    jobs: int | None = None
    batch_size: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    cuda_graphs: bool = False
    train_subset: int | None = None
    seed: int = 0

    def validate(self) -> None:
        """Refuse what cannot be measured, before anything runs."""
        if not 2 <= self.seeds <= MAX_SEEDS:
            raise UsageError(f"--seeds must be between 2 and {MAX_SEEDS} for a measurement, got {self.seeds}")
        for flag, value, least in (("--batches", self.batches, 1), ("--warmup", self.warmup, 0),
                                   ("--rounds", self.rounds, 1), ("--jobs", self.jobs, 1)):
            if value is not None and value < least:
                raise UsageError(f"{flag} must be at least {least}, got {value}")
        check_seed(self.seed)
        check_seed(self.seed + self.seeds - 1, "--seed plus --seeds")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))


def _build(task: dict[str, Any]) -> tuple[Any, list[Any], list[Any], torch.device]:
    """The models and batch samplers of ``task``'s seeds, each built as a run of that seed builds it."""
    from bench.data import BatchSampler, training_images
    from bench.registry import default_registry
    from bench.training.cuda_graphs import StepGraph
    from bench.training.models import SingleModel, StackModel
    from bench.training.stack import SeedStack

    device = resolve_device(task["device"])
    spec = default_registry().load(task["arch"])
    hparams = spec.make_config({} if task["batch_size"] is None else {"batch_size": task["batch_size"]})
    data = training_images(spec.image_size, device, None, task["train_subset"])
    samplers = [BatchSampler(data, hparams.batch_size, seed) for seed in task["seeds"]]
    if task["stack"]:
        models = [StackModel(SeedStack(spec, hparams, task["seeds"], device))]
    else:
        models = []
        for seed in task["seeds"]:
            torch.manual_seed(seed)
            gan = spec.build(hparams, device)
            models.append(SingleModel(gan, device, StepGraph(gan, spec.name) if task["cuda_graphs"] else None))
    for model in models:
        model.set_batches_per_epoch(samplers[0].batches_per_epoch)
    return spec, models, samplers, device


def _train(models: Sequence[Any], samplers: Sequence[Any], steps: int, first: int, precision: str,
           device: torch.device) -> None:
    """``steps`` steps of every model (a stack takes all the seeds' batches at once), one model after another."""
    per_model = len(samplers) // len(models)
    for m, model in enumerate(models):
        own = samplers[m * per_model:(m + 1) * per_model]
        for step in range(first, first + steps):
            with autocast(precision, device):
                model.step([s.next() for s in own], step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _worker(task: dict[str, Any], barrier: Any, results: Any) -> None:
    """One contender's process: build, warm up, wait for the others, time the steps, report."""
    try:
        torch.set_num_threads(task["threads"])
        _, models, samplers, device = _build(task)
        _train(models, samplers, task["warmup"], 0, task["precision"], device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        barrier.wait()
        start = time.perf_counter()
        _train(models, samplers, task["batches"], task["warmup"], task["precision"], device)
        results.put({"elapsed_s": time.perf_counter() - start, "peak_memory_bytes": peak_memory_bytes(device)})
    except BaseException as exc:  # the parent must hear of it, not wait at the barrier
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def _plan(cfg: SeedsConfig, free: int) -> dict[str, list[tuple[list[int], int]]]:
    """Each contender's processes as (seeds, torch threads)."""
    seeds = cfg.seed_list
    jobs = min(cfg.seeds, cfg.jobs or max(1, free))
    shares = [seeds[j::jobs] for j in range(jobs)]
    return {"stack": [(seeds, free)], "jobs": [(s, max(1, free // jobs)) for s in shares],
            "sequential": [(seeds, free)]}


def _run_contender(cfg: SeedsConfig, name: str, processes: list[tuple[list[int], int]]) -> dict[str, Any]:
    """Spawn one contender's processes; return its timed span and peak memory (or its error)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(processes)), ctx.Queue()
    workers = []
    for seeds, threads in processes:
        task = {"arch": cfg.arch, "seeds": seeds, "threads": threads, "device": cfg.device, "stack": name == "stack",
                "batch_size": cfg.batch_size, "train_subset": cfg.train_subset, "precision": cfg.precision,
                "cuda_graphs": cfg.cuda_graphs and name != "stack", "warmup": cfg.warmup, "batches": cfg.batches}
        worker = ctx.Process(target=_worker, args=(task, barrier, results), name=f"gan-bench perf {name}")
        worker.start()
        workers.append(worker)
    reports = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        return {"error": errors[0]}
    span = max(r["elapsed_s"] for r in reports)
    return {"seed_batches_per_s": cfg.seeds * cfg.batches / span, "elapsed_s": span,
            "peak_memory_bytes": sum(r["peak_memory_bytes"] for r in reports)}


def measure_seeds(cfg: SeedsConfig) -> dict[str, Any]:
    """Measure the three contenders in ``cfg.rounds`` rotating rounds; return the perf record."""
    from bench.environment import environment
    from bench.registry import default_registry
    from bench.training.stack import stackable

    cfg.validate()
    device = resolve_device(cfg.device)
    spec = default_registry().load(cfg.arch)
    refused = stackable(spec, spec.make_config({} if cfg.batch_size is None else {"batch_size": cfg.batch_size}))
    free = free_cpus()[0] if device.type == "cpu" else torch.get_num_threads()
    processes = _plan(cfg, free)
    names = [n for n in CONTENDERS if not (n == "stack" and refused)]
    load_start = load_average()
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(cfg.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        rounds.append({name: _run_contender(cfg, name, processes[name]) for name in order})
        failed = {n: v["error"] for n, v in rounds[-1].items() if "error" in v}
        if failed:
            raise UsageError(f"perf --seeds could not train {cfg.arch}: "
                             + "; ".join(f"{n}: {e}" for n, e in failed.items()))
    contenders = {}
    for name in names:
        contenders[name] = {
            "processes": len(processes[name]),
            "threads_per_process": processes[name][0][1],
            "seed_batches_per_s": median_min_max([r[name]["seed_batches_per_s"] for r in rounds]),
            "peak_memory_bytes": max(r[name]["peak_memory_bytes"] for r in rounds),
            "rounds": [r[name]["seed_batches_per_s"] for r in rounds],
        }
    ratios = {f"{name}_vs_sequential": median_min_max(
        [r[name]["seed_batches_per_s"] / r["sequential"]["seed_batches_per_s"] for r in rounds])
        for name in names if name != "sequential"}
    return {
        "kind": "seeds", "created": utc_iso(), "arch": cfg.arch, "seeds": cfg.seed_list, "device": str(device),
        "env": environment(device), "batches": cfg.batches, "warmup": cfg.warmup, "rounds": cfg.rounds,
        "precision": cfg.precision, "cuda_graphs": cfg.cuda_graphs, "batch_size": cfg.batch_size,
        "train_subset": cfg.train_subset, "free_cpus": free if device.type == "cpu" else None,
        "load_start": load_start, "load_end": load_average(),
        "stack_refused": refused, "contenders": contenders, "ratios": ratios,
    }
