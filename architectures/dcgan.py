"""dcgan: the study's convolutional GAN at 32x32, faithful by default (init N(0, 0.02), Sigmoid + BCE)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.architectures.losses import bce_discriminator_loss, bce_generator_loss
from bench.architectures.nets import ConvDiscriminator, ConvGenerator, dcgan_init
from bench.architectures.steps import AdamGANConfig, GeneratorFirstGAN, adam_pair
from bench.contract import ArchSpec, between


@dataclass
class DCGANConfig(AdamGANConfig):
    dropout: float = field(default=0.25, metadata=between(0, 1))


class DCGAN(GeneratorFirstGAN):
    """The study's step (``bench.architectures.steps``), with the generator's Upsample + Conv2d
    pairs run as one transposed convolution (``nets.upsample_conv``) and both networks and
    their activations channels_last (the layout oneDNN's convolutions run fastest in).
    Unlike vanilla, D's three passes stay separate: its BatchNorm couples the rows of a
    batch and its Dropout2d draws new masks on every pass, in the study's order.
    """

    generator_loss = staticmethod(bce_generator_loss)
    discriminator_loss = staticmethod(bce_discriminator_loss)

    def __init__(self, cfg: DCGANConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = ConvGenerator(cfg.latent_dim, 32, cfg.bn_eps).to(device)
        self.discriminator = ConvDiscriminator(32, sigmoid=True, dropout=cfg.dropout, bn_eps=cfg.bn_eps).to(device)
        # The study builds both networks, moves them, then initialises both, in that order;
        # keeping it keeps the random stream of a seeded run the same.
        self.generator.apply(dcgan_init)
        self.discriminator.apply(dcgan_init)
        # In place (the parameters stay the same objects); values and state-dict keys are
        # unchanged. The networks then take and produce channels_last activations themselves.
        self.generator.to(memory_format=torch.channels_last)
        self.discriminator.to(memory_format=torch.channels_last)
        self.opt_g, self.opt_d = adam_pair(self, cfg.lr, (cfg.b1, cfg.b2))


SPEC = ArchSpec(
    name="dcgan",
    description="The study's DCGAN at 32x32: upsample+conv G, Dropout2d D, N(0, 0.02) init, Sigmoid + BCE, Adam 2e-4.",
    image_size=32,
    config=DCGANConfig,
    build=DCGAN,
    timed_batches=20,  # its step costs many MLP steps: bench perf --seeds stays short
)
