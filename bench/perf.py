"""``python -m bench perf``: the suite's runner against the study's loop, side by side.

Three kinds of contender train the same networks from the same seed:

- **the study's loop as published**: torchvision's ``datasets.MNIST`` and a shuffling
  ``DataLoader`` with per-image PIL transforms, ``Variable`` wrappers, NumPy latents, the
  study's step (:func:`study_step`, which also serves as the reference the suite's steps are
  tested against), and ``.item()`` plus a print (to a null sink) every batch;
- **the runner**: the real :class:`bench.runner.Run`, evaluation and sample grids off;
  with ``--precision bf16`` also the runner under bf16 autocast (the study stays fp32);
- **a bare loop**: the same training step on the same preloaded batches with nothing
  around it, so the runner's own overhead can be read off.

Rounds alternate the contenders so that a busy machine slows all of them alike; each
contender's first ``--warmup`` batches of a round are left out. The table gives
batches/s, the ratio to the study in the same round (median and min-max over rounds),
FLOPs per step (matmuls and convolutions, by ``FlopCounterMode``), the GFLOP/s that makes,
and its share of this machine's matmul peak, measured here.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd import Variable
from torch.utils.flop_counter import FlopCounterMode

from bench import console
from bench.data import FILES, PACKAGED_DIR, SUBSET_SEED, BatchSampler, read_verified, training_images
from bench.errors import UsageError
from bench.results import atomic_path, environment, tune_allocator, write_json

#: Where the study's torchvision loader finds MNIST: ``<root>/MNIST/raw/`` (uncompressed).
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gan-bench" / "mnist-raw"
#: Side of the square matrices whose product measures the matmul peak.
PEAK_SIZE = 2048
PRECISIONS = ("fp32", "bf16")


# The study's step, written out -------------------------------------------------------------
#
# The study's three scripts (PyTorch-GAN's gan.py, dcgan.py, wgan.py as the course study ran
# them), on the suite's networks. The forward passes are the study's modules run as the
# study ran them (``nn.Sequential`` in order; no fused layers), so these are the reference
# the suite's optimized steps are checked against (tests/test_perf.py).


def study_generate(generator: nn.Module, z: Tensor) -> Tensor:
    """The study's ``generator(z)``: its layers in order, as its ``forward`` ran them."""
    from architectures.nets import ConvGenerator

    if isinstance(generator, ConvGenerator):
        out = generator.l1(z)
        out = out.view(out.shape[0], 128, generator.init_size, generator.init_size)
        return generator.conv_blocks(out)
    img = generator.model(z)
    return img.view(img.size(0), 1, generator.image_size, generator.image_size)


def study_discriminate(discriminator: nn.Module, img: Tensor) -> Tensor:
    """The study's ``discriminator(img)``."""
    from architectures.nets import ConvDiscriminator

    if isinstance(discriminator, ConvDiscriminator):
        out = discriminator.model(img)
        out = out.view(out.shape[0], -1)
        return discriminator.adv_layer(out)
    return discriminator.model(img)  # nn.Flatten first: the study's img.view(img.size(0), -1)


@dataclass
class StudyModel:
    """What the study's script holds for one architecture: networks, optimizers, settings."""

    arch: str
    generator: nn.Module
    discriminator: nn.Module
    optimizer_G: torch.optim.Optimizer
    optimizer_D: torch.optim.Optimizer
    latent_dim: int
    image_size: int
    hparams: Any
    adversarial_loss: nn.Module = dataclasses.field(default_factory=torch.nn.BCELoss)


def _bce_step(m: StudyModel, real_imgs: Tensor, z: Tensor, i: int) -> tuple[Tensor, Tensor]:
    """gan.py / dcgan.py: the generator step, then the discriminator on the same batch, detached."""
    adversarial_loss = m.adversarial_loss
    n = real_imgs.shape[0]
    valid = Variable(torch.empty(n, 1, dtype=real_imgs.dtype, device=real_imgs.device).fill_(1.0), requires_grad=False)
    fake = Variable(torch.empty(n, 1, dtype=real_imgs.dtype, device=real_imgs.device).fill_(0.0), requires_grad=False)

    m.optimizer_G.zero_grad()
    gen_imgs = study_generate(m.generator, z)
    g_loss = adversarial_loss(study_discriminate(m.discriminator, gen_imgs), valid)
    g_loss.backward()  # fills D's gradients too; optimizer_D.zero_grad() below discards them
    m.optimizer_G.step()

    m.optimizer_D.zero_grad()
    real_loss = adversarial_loss(study_discriminate(m.discriminator, real_imgs), valid)
    fake_loss = adversarial_loss(study_discriminate(m.discriminator, gen_imgs.detach()), fake)
    d_loss = (real_loss + fake_loss) / 2
    d_loss.backward()
    m.optimizer_D.step()
    return d_loss, g_loss


def _wgan_step(m: StudyModel, real_imgs: Tensor, z: Tensor, i: int) -> tuple[Tensor, Tensor | None]:
    """wgan.py: a critic step and clip every batch, a generator step when ``i % n_critic == 0``."""
    m.optimizer_D.zero_grad()
    fake_imgs = study_generate(m.generator, z).detach()
    loss_D = -torch.mean(study_discriminate(m.discriminator, real_imgs)) + torch.mean(study_discriminate(m.discriminator, fake_imgs))
    loss_D.backward()
    m.optimizer_D.step()
    for p in m.discriminator.parameters():
        p.data.clamp_(-m.hparams.clip_value, m.hparams.clip_value)
    loss_G = None
    if i % m.hparams.n_critic == 0:
        m.optimizer_G.zero_grad()
        gen_imgs = study_generate(m.generator, z)
        loss_G = -torch.mean(study_discriminate(m.discriminator, gen_imgs))
        loss_G.backward()
        m.optimizer_G.step()
    return loss_D, loss_G


@dataclass(frozen=True)
class StudyReference:
    """How the study trained one architecture."""

    step: Callable[[StudyModel, Tensor, Tensor, int], tuple[Tensor, Tensor | None]]
    optimizers: Callable[[nn.Module, nn.Module, Any], tuple[torch.optim.Optimizer, torch.optim.Optimizer]]
    #: ``--batches`` when not given: a round of each contender takes tens of seconds on a 2-core CPU.
    default_batches: int


def _adam(g: nn.Module, d: nn.Module, h: Any) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    return (torch.optim.Adam(g.parameters(), lr=h.lr, betas=(h.b1, h.b2)),
            torch.optim.Adam(d.parameters(), lr=h.lr, betas=(h.b1, h.b2)))


def _rmsprop(g: nn.Module, d: nn.Module, h: Any) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    return torch.optim.RMSprop(g.parameters(), lr=h.lr), torch.optim.RMSprop(d.parameters(), lr=h.lr)


#: The architectures with a study loop to compare against.
STUDY_REFERENCES = {
    "dcgan": StudyReference(_bce_step, _adam, default_batches=30),
    "vanilla": StudyReference(_bce_step, _adam, default_batches=200),
    "wgan": StudyReference(_wgan_step, _rmsprop, default_batches=200),
}


def study_reference(arch: str) -> StudyReference:
    """The study's way of training ``arch``; a :class:`UsageError` naming those that have one."""
    if arch not in STUDY_REFERENCES:
        raise UsageError(f"no study loop to compare {arch!r} against; perf has one for: {', '.join(sorted(STUDY_REFERENCES))}")
    return STUDY_REFERENCES[arch]


def study_model(arch: str, gan: Any, hparams: Any, image_size: int) -> StudyModel:
    """The study's script state around ``gan``'s networks (shared, not copied): the study's
    optimizers (PyTorch's defaults, which are a per-parameter loop on the CPU) and settings.
    The networks are put back in the default memory layout, as the study had them."""
    ref = study_reference(arch)
    for net in (gan.generator, gan.discriminator):
        net.to(memory_format=torch.contiguous_format)
    opt_g, opt_d = ref.optimizers(gan.generator, gan.discriminator, hparams)
    return StudyModel(arch, gan.generator, gan.discriminator, opt_g, opt_d, hparams.latent_dim, image_size, hparams)


def study_step(m: StudyModel, real: Tensor, z: Tensor, i: int) -> tuple[Tensor, Tensor | None]:
    """One batch of the study's loop: returns ``(d_loss, g_loss)`` (g_loss None without a generator step).

    Args:
        real: the real images, in [-1, 1].
        z: the latent batch (the study drew it with ``np.random.normal``; tests pass the
            suite's draw so that both sides see the same numbers).
        i: the batch index within the epoch.
    """
    return study_reference(m.arch).step(m, real, z, i)


# The study's data pipeline -----------------------------------------------------------------


def study_mnist_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """A folder torchvision's ``datasets.MNIST`` reads without downloading: the packaged
    files, checked and decompressed once into ``<cache>/MNIST/raw/`` (atomically)."""
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    raw = root / "MNIST" / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for name, (_, size) in FILES.items():
            target = raw / name
            if target.is_file() and target.stat().st_size == size:
                continue
            data = read_verified(PACKAGED_DIR, name)  # checks the SHA-256 of the content
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write the study's MNIST copy to {raw}: {exc.strerror or exc}; choose another --cache-dir") from None
    return root


def study_dataloader(image_size: int, batch_size: int, root: Path, subset: int | None = None) -> torch.utils.data.DataLoader:
    """The study's loader: ``datasets.MNIST`` with per-image PIL transforms, shuffled each epoch."""
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(
        str(root), train=True, download=False,
        transform=transforms.Compose([transforms.Resize(image_size), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]),
    )
    if subset is not None:  # the same images as the runner's --train-subset
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(SUBSET_SEED))
        dataset = torch.utils.data.Subset(dataset, order[:subset].tolist())
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)


def run_study_loop(m: StudyModel, loader: torch.utils.data.DataLoader, batches: int, warmup: int, sink: io.TextIOBase,
                   device: torch.device = torch.device("cpu")) -> list[float]:
    """Train the study's way for ``warmup + batches`` batches; return the last ``batches``' times in ms.

    A batch's time runs from the end of the previous batch to the end of its own, so it
    includes fetching it from the loader (and any epoch restart).
    """
    n_epochs = 200
    # The study's ``Tensor = torch.cuda.FloatTensor if cuda else torch.FloatTensor``.
    Tensor = torch.cuda.FloatTensor if device.type == "cuda" else torch.FloatTensor
    done, epoch, times = 0, 0, []
    last = time.perf_counter()
    while True:
        for i, (imgs, _) in enumerate(loader):
            real_imgs = Variable(imgs.type(Tensor))
            z = Variable(Tensor(np.random.normal(0, 1, (imgs.shape[0], m.latent_dim))))
            d_loss, g_loss = study_step(m, real_imgs, z, i)
            batches_done = epoch * len(loader) + i
            if g_loss is not None:  # wgan.py prints on generator steps only; gan.py and dcgan.py every batch
                print(
                    "[Epoch %d/%d] [Batch %d/%d] [Batches Done: %d] [D loss: %f] [G loss: %f]"
                    % (epoch, n_epochs, i, len(loader), batches_done, d_loss.item(), g_loss.item()),
                    file=sink,
                )
            now = time.perf_counter()
            if done >= warmup:
                times.append((now - last) * 1e3)
            last = now
            done += 1
            if done == warmup + batches:
                return times
        epoch += 1


# Measurements -------------------------------------------------------------------------------


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0, size: int = PEAK_SIZE, device: torch.device = torch.device("cpu")) -> float:
    """GFLOP/s of repeated ``size`` x ``size`` matrix products in ``dtype`` for about ``seconds``."""
    cuda = device.type == "cuda"
    if cuda:
        size *= 4  # a GPU needs a bigger product to reach its peak
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: thread pool, kernel selection
    if cuda:
        torch.cuda.synchronize(device)
    n, start = 0, time.perf_counter()
    while True:
        a @ b
        n += 1
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * size**3 * n / elapsed / 1e9


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs (matmuls and convolutions, as ``FlopCounterMode`` counts them) of one call of ``step``."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def _autocast(precision: str, device: torch.device = torch.device("cpu")) -> Any:
    # As the runner: no cast cache (see ``Run._autocast``).
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False) if precision == "bf16" else nullcontext()


@dataclass
class PerfConfig:
    """The settings of one ``bench perf``."""

    arch: str
    precision: str = "fp32"
    rounds: int = 3
    batches: int | None = None
    warmup: int = 10
    batch_size: int | None = None
    seed: int = 0
    train_subset: int | None = None
    cache_dir: str | None = None
    peak_seconds: float = 1.0
    json: str | None = None
    device: str = "cpu"
    cuda_graphs: bool = False

    def validate(self) -> None:
        """Raise :class:`UsageError` for settings that cannot work, before anything runs."""
        study_reference(self.arch)
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}; choose from: {', '.join(PRECISIONS)}")
        for flag, value in {"--rounds": self.rounds, "--batches": self.batches, "--batch-size": self.batch_size}.items():
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}")
        if not self.peak_seconds > 0:
            raise UsageError(f"--peak-seconds must be positive, got {self.peak_seconds}")


@dataclass
class Timing:
    """One contender's measured batches in one round."""

    batch_ms: list[float]
    #: Per batch, time the contender spends outside its batches (the runner's loop bookkeeping).
    outside_ms: float = 0.0

    @property
    def batches_per_s(self) -> float:
        """Measured batches over their total time (outliers included: they are part of the cost)."""
        return 1e3 / (statistics.fmean(self.batch_ms) + self.outside_ms)

    @property
    def typical_ms(self) -> float:
        """The median batch time plus the time outside: robust to bursts of other work."""
        return statistics.median(self.batch_ms) + self.outside_ms


class Contenders:
    """Builds and times each contender; one instance per ``bench perf``."""

    def __init__(self, cfg: PerfConfig, out_dir: Path):
        from bench.registry import default_registry

        self.cfg = cfg
        self.spec = default_registry().load(cfg.arch)
        overrides = {} if cfg.batch_size is None else {"batch_size": cfg.batch_size}
        self.hparams = self.spec.make_config(overrides)
        self.batches = cfg.batches or study_reference(cfg.arch).default_batches
        self.out_dir = out_dir
        from bench.runner import resolve_device

        self.dev = resolve_device(cfg.device)
        self.data = training_images(self.spec.image_size, self.dev, None, cfg.train_subset)
        self.study_root = study_mnist_root(cfg.cache_dir)
        self.runner_flops: int | None = None

    def _build(self) -> Any:
        torch.manual_seed(self.cfg.seed)
        return self.spec.build(self.hparams, self.dev)

    def study(self) -> Timing:
        """The study's loop on the study's pipeline."""
        np.random.seed(self.cfg.seed)
        m = study_model(self.cfg.arch, self._build(), self.hparams, self.spec.image_size)
        loader = study_dataloader(self.spec.image_size, self.hparams.batch_size, self.study_root, self.cfg.train_subset)
        with open(os.devnull, "w") as sink:
            return Timing(run_study_loop(m, loader, self.batches, self.cfg.warmup, sink, self.dev))

    def runner(self, precision: str) -> Timing:
        """The real runner: its own batch timer's readings, and its loop's time outside them."""
        from bench.runner import Run, RunConfig

        cfg = RunConfig(
            arch=self.cfg.arch, steps=self.cfg.warmup + self.batches, batch_size=self.hparams.batch_size,
            seed=self.cfg.seed, device=str(self.dev), cuda_graphs=self.cfg.cuda_graphs, precision=precision, out=str(self.out_dir), sample_every=0,
            warmup_steps=self.cfg.warmup, train_subset=self.cfg.train_subset, eval=False,
        )
        run = Run(cfg, self.spec)
        run.train()
        times = run.timer.collect()
        self.runner_flops = run.flops_per_step
        # Progress, log flushes and bookkeeping around the timed batches are part of its cost.
        outside_ms = (run.train_wall_s * 1e3 - sum(times)) / len(times)
        return Timing(times[self.cfg.warmup:] or times, outside_ms)

    def bare(self, precision: str) -> Timing:
        """A bare loop: the same step on the same preloaded batches, timed like the runner times them."""
        gan = self._build()
        sampler = BatchSampler(self.data, self.hparams.batch_size, self.cfg.seed)
        gan.batches_per_epoch = sampler.batches_per_epoch
        outs, times = [], []
        cuda = self.dev.type == "cuda"
        for step in range(self.cfg.warmup + self.batches):
            if cuda and step == self.cfg.warmup:
                torch.cuda.synchronize(self.dev)
                measured_from = time.perf_counter()
            start = time.perf_counter()
            real = sampler.next()
            with _autocast(precision, self.dev):
                outs.append(gan.train_step(real, step))
            times.append((time.perf_counter() - start) * 1e3)
        if cuda:  # the host runs ahead of the GPU: time the measured batches as a whole
            torch.cuda.synchronize(self.dev)
            per = (time.perf_counter() - measured_from) * 1e3 / self.batches
            return Timing([per] * self.batches)
        return Timing(times[self.cfg.warmup:])

    def study_flops(self) -> int:
        """FLOPs of a study step, averaged over the runner's ``FLOP_STEPS`` steps (a whole
        5-batch critic cycle for wgan), on a throwaway model; the RNG state is restored."""
        from bench.runner import FLOP_STEPS

        state = torch.get_rng_state()
        try:
            m = study_model(self.cfg.arch, self._build(), self.hparams, self.spec.image_size)
            real = self.data[: self.hparams.batch_size].clone()
            z = torch.randn(real.shape[0], self.hparams.latent_dim, device=self.dev)
            return count_flops(lambda: [study_step(m, real, z, i) for i in range(FLOP_STEPS)]) // FLOP_STEPS
        finally:
            torch.set_rng_state(state)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(cfg: PerfConfig) -> dict[str, Any]:
    """Run every contender ``cfg.rounds`` times, alternating; return the result record."""
    cfg.validate()
    precisions = ["fp32"] + (["bf16"] if cfg.precision == "bf16" else [])
    names = ["study"] + [f"runner_{p}" for p in precisions] + [f"bare_{p}" for p in precisions]
    timings: dict[str, list[Timing]] = {k: [] for k in names}
    peaks: dict[str, list[float]] = {p: [] for p in precisions}
    # Process-wide, so before the first contender: the study's loop runs on the same allocator.
    tune_allocator()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gan-bench-perf-") as tmp:
        c = Contenders(cfg, Path(tmp))
        for r in range(cfg.rounds):
            console.err.print(f"perf {cfg.arch}: round {r + 1}/{cfg.rounds}", soft_wrap=True)
            for p in precisions:
                peaks[p].append(matmul_peak(torch.float32 if p == "fp32" else torch.bfloat16, cfg.peak_seconds, device=c.dev))
            # Each round starts one contender later, so that none always runs first (or last).
            for name in names[r % len(names):] + names[: r % len(names)]:
                kind, _, p = name.partition("_")
                timings[name].append(c.study() if kind == "study" else c.runner(p) if kind == "runner" else c.bare(p))
        load_after = os.getloadavg()[0]
        flops = {"study": c.study_flops(), "suite": c.runner_flops}

    peak = {p: max(v) for p, v in peaks.items()}
    contenders = {}
    for name in names:
        precision = "fp32" if name == "study" else name.rsplit("_", 1)[1]
        per_step = flops["study" if name == "study" else "suite"]
        bps = [t.batches_per_s for t in timings[name]]
        med = statistics.median(bps)
        gflops = per_step * med / 1e9 if per_step else None
        contenders[name] = {
            "precision": precision,
            "batches_per_s": bps,
            "batches_per_s_median": med,
            "batch_ms_median": [statistics.median(t.batch_ms) for t in timings[name]],
            "vs_study": _spread([a / b for a, b in zip(bps, (t.batches_per_s for t in timings["study"]))]),
            "flops_per_step": per_step,
            "gflops_per_s": gflops,
            "share_of_peak": gflops / peak[precision] if gflops else None,
        }
    overhead = {
        p: {
            # Median batch times (+ the runner's time outside its timer) of alternating runs:
            # robust to bursts of other work, which mean times are not.
            "vs_bare_loop": _spread([
                run.typical_ms / bare.typical_ms - 1 for run, bare in zip(timings[f"runner_{p}"], timings[f"bare_{p}"])
            ]),
            # Within each runner run: its loop's time outside the batch timer (progress, log
            # flushes, bookkeeping) over its mean batch time. Immune to other work between runs.
            "outside_batch_timer": _spread([t.outside_ms / statistics.fmean(t.batch_ms) for t in timings[f"runner_{p}"]]),
        }
        for p in precisions
    }
    return {
        "arch": cfg.arch,
        "precision": cfg.precision,
        "batch_size": c.hparams.batch_size,
        "rounds": cfg.rounds,
        "batches_per_round": c.batches,
        "warmup_batches": cfg.warmup,
        "train_subset": cfg.train_subset,
        "matmul_peak_gflops": peak,
        "contenders": contenders,
        "runner_overhead": overhead,
        # Other work on the machine skews every number; 1-minute load average before and after.
        "load_average": {"before": load_before, "after": load_after, "cpus": os.cpu_count()},
        "device": str(c.dev),
        "cuda_graphs": cfg.cuda_graphs,
        "env": environment(c.dev),
    }


LABELS = {
    "study": "study's loop (as published)",
    "runner_fp32": "runner",
    "runner_bf16": "runner, bf16 autocast",
    "bare_fp32": "bare loop (preloaded)",
    "bare_bf16": "bare loop, bf16 autocast",
}


def print_perf(record: dict[str, Any]) -> None:
    """Print the comparison table of one perf record."""
    from rich.table import Table

    table = Table(
        title=f"{record['arch']}: batches of {record['batch_size']} on {record['env']['device_name']}"
              f"{' with CUDA graphs' if record.get('cuda_graphs') else ''}, "
              f"{record['rounds']} rounds x {record['batches_per_round']} batches (+{record['warmup_batches']} warm-up)",
        title_justify="left",
    )
    columns = ("contender", "precision", "batches/s", "min-max", "vs study", "min-max ", "GFLOP/step", "GFLOP/s",
               "of peak", "vs bare loop")
    for col in columns:
        table.add_column(col, justify="left" if col == "contender" else "right", style="bold" if col == "contender" else None)
    for name, c in record["contenders"].items():
        v, r = c["batches_per_s"], c["vs_study"]
        over = record["runner_overhead"].get(c["precision"]) if name.startswith("runner") else None
        table.add_row(
            LABELS.get(name, name), c["precision"], f"{c['batches_per_s_median']:.1f}", f"{min(v):.1f}-{max(v):.1f}",
            f"{r['median']:.2f}x", f"{r['min']:.2f}-{r['max']:.2f}",
            "-" if c["flops_per_step"] is None else f"{c['flops_per_step'] / 1e9:.3f}",
            "-" if c["gflops_per_s"] is None else f"{c['gflops_per_s']:.1f}",
            "-" if c["share_of_peak"] is None else f"{c['share_of_peak']:.0%}",
            "-" if over is None else f"{over['vs_bare_loop']['median']:+.1%}",
        )
    peaks = ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in record["matmul_peak_gflops"].items())
    over = "; ".join(
        f"{p} {o['vs_bare_loop']['median']:+.1%} ({o['vs_bare_loop']['min']:+.1%} to {o['vs_bare_loop']['max']:+.1%}), "
        f"of which outside its batch timer {o['outside_batch_timer']['median']:+.1%}"
        for p, o in record["runner_overhead"].items()
    )
    env, load = record["env"], record["load_average"]
    table.caption = (
        f"runner's time per batch vs the bare loop (median batch times, alternating): {over}\n"
        f"matmul peak ({PEAK_SIZE}x{PEAK_SIZE}, measured here): {peaks}; "
        f"{env['cpu_model']}, {env['torch_threads']} threads, torch {env['torch']}; "
        f"allocator (every contender): {env.get('allocator', 'default')}; load average {load['before']:.1f} before, {load['after']:.1f} after"
    )
    console.out.print(table)
    # The load after includes this process's own threads.
    busy = max(load["before"], load["after"] - env["torch_threads"])
    bps = [c["batches_per_s"] for c in record["contenders"].values()]
    if busy > 0.5 * (load["cpus"] or 1) or any(max(v) > 1.5 * min(v) for v in bps):
        console.warn("other work was running on this machine (load average, or rounds that disagree by more "
                     "than 1.5x): the numbers are skewed; rerun when it is idle, or with more --rounds")


def cmd_perf(args: argparse.Namespace) -> int:
    """``bench perf``: measure, print the table, write the JSON."""
    cfg = PerfConfig(
        arch=args.arch, precision=args.precision, rounds=args.rounds, batches=args.batches, warmup=args.warmup,
        batch_size=args.batch_size, seed=args.seed, train_subset=args.train_subset, cache_dir=args.cache_dir,
        peak_seconds=args.peak_seconds, json=args.json, device=args.device, cuda_graphs=args.cuda_graphs,
    )
    cfg.validate()
    path = Path(cfg.json or f"results/perf-{cfg.arch}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = measure(cfg)
    print_perf(record)
    write_json(path, record)
    console.out.print(f"results: {path}")
    return 0


def add_perf_parser(subparsers: Any) -> None:
    """Register ``perf`` on the CLI's subparsers."""
    from bench.cli import parse_int

    p = subparsers.add_parser(
        "perf", help="time the runner against the study's loop, side by side",
        description="Train one architecture the study's way (torchvision DataLoader, PIL transforms, "
                    ".item() every batch), through the suite's runner and in a bare loop, alternating "
                    "rounds, and compare batches/s, FLOPs and the share of this machine's matmul peak.",
    )
    p.add_argument("--arch", required=True, help=f"one with a study loop: {', '.join(sorted(STUDY_REFERENCES))}")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="bf16 adds the runner under bf16 autocast as a contender (the study stays fp32)")
    p.add_argument("--rounds", type=parse_int, default=3, help="rounds of every contender, alternating (default 3)")
    p.add_argument("--batches", type=parse_int, metavar="N",
                   help="timed batches per contender and round (default 200; 30 for dcgan)")
    p.add_argument("--warmup", type=parse_int, default=10, metavar="N", help="batches left out at the start of each (default 10)")
    p.add_argument("--batch-size", type=parse_int, help="default: the architecture's (64)")
    p.add_argument("--seed", type=parse_int, default=0, help="seed of the networks and data order (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: every contender runs there")
    p.add_argument("--cuda-graphs", action="store_true", help="the runner replays its step as a CUDA graph (graph-safe architectures)")
    p.add_argument("--train-subset", type=parse_int, metavar="N", help="draw batches from the first N images of the fixed shuffle only")
    p.add_argument("--cache-dir", metavar="DIR", help=f"where the study's loader finds MNIST uncompressed (default {DEFAULT_CACHE})")
    p.add_argument("--peak-seconds", type=float, default=1.0, metavar="S", help="time spent measuring each matmul peak (default 1)")
    p.add_argument("--json", metavar="PATH", help="where to write the results (default results/perf-<arch>.json)")
    p.set_defaults(func=cmd_perf)
