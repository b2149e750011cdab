"""vanilla: the study's MLP GAN, faithful by default (BatchNorm eps 0.8, Sigmoid + BCE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from architectures.losses import probability_bce
from architectures.nets import MLPDiscriminator, MLPGenerator
from architectures.steps import GeneratorFirstGAN, adam_pair
from bench.contract import ArchSpec, GANConfig


@dataclass
class VanillaConfig(GANConfig):
    lr: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    bn_eps: float = 0.8


class Vanilla(GeneratorFirstGAN):
    """The study's step with one discriminator pass: D has no BatchNorm and no dropout, so
    its rows do not interact and a pass changes nothing in it (``architectures.steps``)."""

    one_discriminator_pass = True

    def __init__(self, cfg: VanillaConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = MLPGenerator(cfg.latent_dim, 28, cfg.bn_eps).to(device)
        self.discriminator = MLPDiscriminator(28, sigmoid=True).to(device)
        self.opt_g, self.opt_d = adam_pair(self, cfg.lr, (cfg.b1, cfg.b2))

    def generator_loss(self, d_fake: Tensor) -> Tensor:
        return probability_bce(d_fake, torch.ones_like(d_fake))

    def discriminator_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        return (probability_bce(d_real, torch.ones_like(d_real)) + probability_bce(d_fake, torch.zeros_like(d_fake))) / 2


SPEC = ArchSpec(
    name="vanilla",
    description="The study's MLP GAN: BatchNorm eps 0.8, Sigmoid + BCE, Adam 2e-4, G step first.",
    image_size=28,
    config=VanillaConfig,
    build=Vanilla,
)
