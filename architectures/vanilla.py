"""vanilla: the study's MLP GAN, faithful by default (BatchNorm eps 0.8, Sigmoid + BCE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.architectures.losses import bce_discriminator_loss, bce_generator_loss
from bench.architectures.nets import MLPDiscriminator, MLPGenerator
from bench.architectures.steps import AdamGANConfig, GeneratorFirstGAN, adam_pair
from bench.contract import ArchSpec


@dataclass
class VanillaConfig(AdamGANConfig):
    """The study's vanilla settings, all shared with the family (:class:`AdamGANConfig`)."""


class Vanilla(GeneratorFirstGAN):
    """The study's step with one discriminator pass: D has no BatchNorm and no dropout, so
    its rows do not interact and a pass changes nothing in it (``bench.architectures.steps``)."""

    one_discriminator_pass = True

    generator_loss = staticmethod(bce_generator_loss)
    discriminator_loss = staticmethod(bce_discriminator_loss)

    def __init__(self, cfg: VanillaConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = MLPGenerator(cfg.latent_dim, 28, cfg.bn_eps).to(device)
        self.discriminator = MLPDiscriminator(28, sigmoid=True).to(device)
        self.opt_g, self.opt_d = adam_pair(self, cfg.lr, (cfg.b1, cfg.b2))


SPEC = ArchSpec(
    name="vanilla",
    description="The study's MLP GAN: BatchNorm eps 0.8, Sigmoid + BCE, Adam 2e-4, G step first.",
    image_size=28,
    config=VanillaConfig,
    build=Vanilla,
)
