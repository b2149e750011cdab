"""lsgan: vanilla's networks and step with least-squares losses on raw outputs (Mao et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.architectures.losses import least_squares_discriminator_loss, least_squares_generator_loss
from bench.architectures.nets import MLPDiscriminator, MLPGenerator
from bench.architectures.steps import AdamGANConfig, GeneratorFirstGAN, adam_pair
from bench.contract import ArchSpec


@dataclass
class LSGANConfig(AdamGANConfig):
    """vanilla's settings: LSGAN changes the losses only (:class:`AdamGANConfig`)."""


class LSGAN(GeneratorFirstGAN):
    """Vanilla's networks and step (one discriminator pass: D has no BatchNorm and no
    dropout), with least-squares losses on D's raw outputs."""

    one_discriminator_pass = True

    generator_loss = staticmethod(least_squares_generator_loss)
    discriminator_loss = staticmethod(least_squares_discriminator_loss)

    def __init__(self, cfg: LSGANConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = MLPGenerator(cfg.latent_dim, 28, cfg.bn_eps).to(device)
        self.discriminator = MLPDiscriminator(28, sigmoid=False).to(device)
        self.opt_g, self.opt_d = adam_pair(self, cfg.lr, (cfg.b1, cfg.b2))


SPEC = ArchSpec(
    name="lsgan",
    description=(
        "Vanilla's MLP networks and step with least-squares losses on raw outputs "
        "(targets 1/0, D loss halved), Adam 2e-4."
    ),
    image_size=28,
    config=LSGANConfig,
    build=LSGAN,
)
