"""The study's training loop, written out: its step, its optimizers and its data pipeline.

The study's three scripts (PyTorch-GAN's gan.py, dcgan.py, wgan.py as the course study ran
them), on the suite's networks. The forward passes are the study's modules run as the study
ran them (``nn.Sequential`` in order; no fused layers), so :func:`study_step` is also the
reference the suite's optimized steps are checked against (tests/unit/test_architectures.py).

The one bench module that imports ``bench.architectures.nets``: the study's forward passes need
the networks' layers, not just their ``forward``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd import Variable

from bench.architectures.nets import ConvDiscriminator, ConvGenerator
from bench.contract import GAN, GANConfig
from bench.data import FILES, PACKAGED_DIR, SUBSET_SEED, read_verified
from bench.errors import UsageError
from bench.storage import atomic_path

#: Where the study's torchvision loader finds MNIST: ``<root>/MNIST/raw/`` (uncompressed).
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gan-bench" / "mnist-raw"
CPU = torch.device("cpu")

Optimizers = tuple[torch.optim.Optimizer, torch.optim.Optimizer]


# The study's step ------------------------------------------------------------------------------


def study_generate(generator: nn.Module, z: Tensor) -> Tensor:
    """Run the study's ``generator(z)``: its layers in order, as its ``forward`` ran them."""
    if isinstance(generator, ConvGenerator):
        out = generator.l1(z)
        out = out.view(out.shape[0], 128, generator.init_size, generator.init_size)
        return generator.conv_blocks(out)
    img = generator.model(z)
    return img.view(img.size(0), 1, generator.image_size, generator.image_size)


def study_discriminate(discriminator: nn.Module, img: Tensor) -> Tensor:
    """Run the study's ``discriminator(img)``."""
    if isinstance(discriminator, ConvDiscriminator):
        out = discriminator.model(img)
        out = out.view(out.shape[0], -1)
        return discriminator.adv_layer(out)
    return discriminator.model(img)  # nn.Flatten first: the study's img.view(img.size(0), -1)


@dataclass
class StudyModel:
    """What the study's script holds for one architecture: networks, optimizers, settings.

    ``hparams`` is the architecture's config; the study's steps read its own settings from
    it (``lr``, ``b1``, ``b2``; wgan's ``clip_value`` and ``n_critic``).
    """

    arch: str
    generator: nn.Module
    discriminator: nn.Module
    optimizer_G: torch.optim.Optimizer
    optimizer_D: torch.optim.Optimizer
    latent_dim: int
    image_size: int
    hparams: GANConfig
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
    loss_D = (-torch.mean(study_discriminate(m.discriminator, real_imgs))
              + torch.mean(study_discriminate(m.discriminator, fake_imgs)))
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
    optimizers: Callable[[nn.Module, nn.Module, GANConfig], Optimizers]
    #: ``--batches`` when not given: a round of each contender takes tens of seconds on a 2-core CPU.
    default_batches: int


def _adam(g: nn.Module, d: nn.Module, h: GANConfig) -> Optimizers:
    return (torch.optim.Adam(g.parameters(), lr=h.lr, betas=(h.b1, h.b2)),
            torch.optim.Adam(d.parameters(), lr=h.lr, betas=(h.b1, h.b2)))


def _rmsprop(g: nn.Module, d: nn.Module, h: GANConfig) -> Optimizers:
    return torch.optim.RMSprop(g.parameters(), lr=h.lr), torch.optim.RMSprop(d.parameters(), lr=h.lr)


#: The architectures with a study loop to compare against.
STUDY_REFERENCES = {
    "dcgan": StudyReference(_bce_step, _adam, default_batches=30),
    "vanilla": StudyReference(_bce_step, _adam, default_batches=200),
    "wgan": StudyReference(_wgan_step, _rmsprop, default_batches=200),
}


def study_reference(arch: str) -> StudyReference:
    """Return the study's way of training ``arch``; a :class:`UsageError` names those that have one."""
    if arch not in STUDY_REFERENCES:
        raise UsageError(
            f"no study loop to compare {arch!r} against; perf has one for: {', '.join(sorted(STUDY_REFERENCES))}"
        )
    return STUDY_REFERENCES[arch]


def study_model(arch: str, gan: GAN, hparams: GANConfig, image_size: int) -> StudyModel:
    """Wrap ``gan``'s networks (shared, not copied) in the study's script state.

    The study's optimizers are PyTorch's defaults, which are a per-parameter loop on the CPU.
    The networks are put back in the default memory layout, as the study had them.
    """
    ref = study_reference(arch)
    for net in (gan.generator, gan.discriminator):
        net.to(memory_format=torch.contiguous_format)
    opt_g, opt_d = ref.optimizers(gan.generator, gan.discriminator, hparams)
    return StudyModel(arch, gan.generator, gan.discriminator, opt_g, opt_d, hparams.latent_dim, image_size, hparams)


def study_step(m: StudyModel, real: Tensor, z: Tensor, i: int) -> tuple[Tensor, Tensor | None]:
    """Run one batch of the study's loop: returns ``(d_loss, g_loss)`` (g_loss None without a generator step).

    Args:
        real: the real images, in [-1, 1].
        z: the latent batch (the study drew it with ``np.random.normal``; tests pass the
            suite's draw so that both sides see the same numbers).
        i: the batch index within the epoch.
    """
    return study_reference(m.arch).step(m, real, z, i)


# The study's data pipeline ---------------------------------------------------------------------


def study_mnist_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a folder torchvision's ``datasets.MNIST`` reads without downloading.

    The packaged files, checked and decompressed once into ``<cache>/MNIST/raw/`` (atomically).
    """
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
        raise UsageError(
            f"cannot write the study's MNIST copy to {raw}: {exc.strerror or exc}; choose another --cache-dir"
        ) from None
    return root


def study_dataloader(image_size: int, batch_size: int, root: Path,
                     subset: int | None = None) -> torch.utils.data.DataLoader:
    """Build the study's loader: ``datasets.MNIST`` with per-image PIL transforms, shuffled each epoch."""
    from torchvision import datasets, transforms

    dataset = datasets.MNIST(
        str(root), train=True, download=False,
        transform=transforms.Compose(
            [transforms.Resize(image_size), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
        ),
    )
    if subset is not None:  # the same images as the runner's --train-subset
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(SUBSET_SEED))
        dataset = torch.utils.data.Subset(dataset, order[:subset].tolist())
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)


def run_study_loop(m: StudyModel, loader: torch.utils.data.DataLoader, batches: int, warmup: int,
                   sink: io.TextIOBase, device: torch.device = CPU) -> list[float]:
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
                    # The study's own %-formatting: its cost is part of the loop being timed.
                    "[Epoch %d/%d] [Batch %d/%d] [Batches Done: %d] [D loss: %f] [G loss: %f]"  # noqa: UP031
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
