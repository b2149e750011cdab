"""sngan: dcgan's generator, a spectrally normalized discriminator and the hinge loss (Miyato et al., 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.architectures.losses import hinge_discriminator_loss, hinge_generator_loss
from bench.architectures.nets import ConvDiscriminator, ConvGenerator, dcgan_init
from bench.architectures.steps import AdamGANConfig, GeneratorFirstGAN, adam_pair
from bench.contract import ArchSpec


@dataclass
class SNGANConfig(AdamGANConfig):
    """dcgan's optimizer and generator settings; its discriminator has spectral norm instead of dropout."""


class SNGAN(GeneratorFirstGAN):
    """dcgan's step (``bench.architectures.steps``), so the two differ only in D and loss. D's
    passes stay separate: each runs a power iteration of the spectral norm, as three
    separate passes would in a plain implementation."""

    generator_loss = staticmethod(hinge_generator_loss)
    discriminator_loss = staticmethod(hinge_discriminator_loss)

    def __init__(self, cfg: SNGANConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = ConvGenerator(cfg.latent_dim, 32, cfg.bn_eps).to(device)
        # Spectral norm alone regularises D, as in the paper: BatchNorm after it would rescale
        # activations and undo the per-layer Lipschitz bound. The hinge loss takes logits.
        self.discriminator = ConvDiscriminator(
            32, sigmoid=False, batch_norm=False, dropout=0.0, spectral_norm=True
        ).to(device)
        # dcgan's init for the generator it shares; the discriminator keeps PyTorch's default,
        # whose scale spectral normalization divides out anyway.
        self.generator.apply(dcgan_init)
        # As dcgan: the layout oneDNN's convolutions run fastest in; values are unchanged.
        self.generator.to(memory_format=torch.channels_last)
        self.discriminator.to(memory_format=torch.channels_last)
        self.opt_g, self.opt_d = adam_pair(self, cfg.lr, (cfg.b1, cfg.b2))


SPEC = ArchSpec(
    name="sngan",
    description=(
        "dcgan's generator with a spectral-norm discriminator (no BatchNorm, no Dropout) "
        "and hinge loss, Adam 2e-4, 32x32."
    ),
    image_size=32,
    config=SNGANConfig,
    build=SNGAN,
    timed_batches=20,  # its step costs many MLP steps: bench perf --seeds stays short
)
