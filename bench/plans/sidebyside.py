"""Every architecture of a comparison timed side by side: rounds that alternate them in one process.

The training runs of a comparison follow one another, so their own step times follow the
machine's load too (vanilla and lsgan, the same networks, once measured 1484 and 617 ms per
step that way). Here each architecture is built once, from seed 0, on the comparison's
settings, and every round runs a few warm-up steps and then ``steps`` timed steps of each, in a
rotating order, with the same threads and the same data path as the runs: load that comes and
goes then falls on all of them alike. What it measures is written to the comparison's
``step_times.json`` (:mod:`bench.plans.steptimes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.config import PlanSettings, RunConfig
from bench.contract import GAN
from bench.data import BatchSampler, training_images
from bench.device import autocast, resolve_device
from bench.environment import run_threads
from bench.machine import load_average
from bench.errors import PluginError
from bench.plans.steptimes import ArchStepTimes, StepTimes
from bench.registry import default_registry
from bench.stats import Stats
from bench.stop import StopRequest
from bench.storage import utc_iso
from bench.timing import StepTimer
from bench.training.checks import build_gan

#: Defaults of the timing phase: rounds of every architecture, and steps timed in each after the warm-up.
ROUNDS = 3
STEPS = 20
WARMUP = 5


@dataclass
class _Contender:
    name: str
    gan: GAN
    sampler: BatchSampler
    step: int = 0
    times_ms: list[float] = field(default_factory=list)
    round_medians_ms: list[float] = field(default_factory=list)


def build_contender(arch: str, cfg: RunConfig, device: torch.device, images: dict[int, torch.Tensor]) -> _Contender:
    """``arch`` built as a comparison's run of seed 0 is, with its data (from ``images`` by image size,
    which the architectures of one size share)."""
    spec = default_registry().load(arch)
    overrides = dict(cfg.hparams) | ({} if cfg.batch_size is None else {"batch_size": cfg.batch_size})
    hparams = spec.make_config(overrides)
    if spec.image_size not in images:
        images[spec.image_size] = training_images(spec.image_size, device, cfg.data_dir, cfg.train_subset)
    sampler = BatchSampler(images[spec.image_size], hparams.batch_size, seed=0)
    torch.manual_seed(0)
    gan = build_gan(spec, hparams, device, overridden=overrides)
    gan.batches_per_epoch = sampler.batches_per_epoch  # the plugin contract, as the runner keeps it
    return _Contender(arch, gan, sampler)


def time_side_by_side(settings: PlanSettings, archs: list[str], rounds: int = ROUNDS, steps: int = STEPS,
                      warmup: int = WARMUP, stop: StopRequest | None = None) -> StepTimes | None:
    """Time each of ``archs``'s training steps in ``rounds`` rounds that alternate them; None if stopped."""
    cfg = settings.run_config(arch="-")
    device = resolve_device(cfg.device)
    threads, _ = run_threads(device, cfg.threads)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_start = load_average()
    try:
        images: dict[int, torch.Tensor] = {}
        contenders = {arch: build_contender(arch, cfg, device, images) for arch in archs}
        timer = StepTimer(device)
        for r in range(rounds):
            for arch in archs[r % len(archs):] + archs[: r % len(archs)]:
                if stop is not None and stop.requested:
                    return None
                _time_round(contenders[arch], timer, cfg.precision, device, warmup, steps)
    finally:
        torch.set_num_threads(previous_threads)
    return StepTimes(
        created=utc_iso(), device=str(device), threads=threads, precision=cfg.precision, rounds=rounds,
        steps_per_round=steps, warmup_steps=warmup, load_start=load_start,
        load_end=load_average(),
        archs={arch: ArchStepTimes(batch_size=c.sampler.batch_size, times_ms=c.times_ms,
                                   round_medians_ms=c.round_medians_ms) for arch, c in contenders.items()},
    )


def _time_round(c: _Contender, timer: StepTimer, precision: str, device: torch.device, warmup: int,
                steps: int) -> None:
    """Run ``warmup`` then ``steps`` steps of one architecture, timed as the runner times a batch."""
    for _ in range(warmup + steps):
        timer.start()
        real = c.sampler.next()
        try:
            with autocast(precision, device):
                c.gan.train_step(real, c.step)
        except Exception as exc:
            raise PluginError(c.name, f"train_step raised {type(exc).__name__} at step {c.step} of the side-by-side "
                                      f"step timing: {exc}") from exc
        timer.stop()
        c.step += 1
    times = timer.drain()[warmup:]
    c.times_ms.extend(times)
    c.round_medians_ms.append(Stats.of(times).median)
