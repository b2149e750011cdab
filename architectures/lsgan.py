"""lsgan: vanilla's networks and step with least-squares losses on raw outputs (Mao et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from architectures.losses import least_squares_discriminator_loss, least_squares_generator_loss
from architectures.nets import MLPDiscriminator, MLPGenerator
from bench.contract import GAN, ArchSpec, GANConfig


@dataclass
class LSGANConfig(GANConfig):
    lr: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    bn_eps: float = 0.8


class LSGAN(GAN):
    """Generator step first, then the discriminator on the same fake batch, detached (as vanilla)."""

    graph_safe = True  # the same kernels every step, whatever its index

    def __init__(self, cfg: LSGANConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = MLPGenerator(cfg.latent_dim, 28, cfg.bn_eps).to(device)
        self.discriminator = MLPDiscriminator(28, sigmoid=False).to(device)
        betas = (cfg.b1, cfg.b2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas)

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)

        self.opt_g.zero_grad(set_to_none=True)
        fake = self.generator(z)
        g_loss = least_squares_generator_loss(self.discriminator(fake))
        g_loss.backward()
        self.opt_g.step()

        self.opt_d.zero_grad(set_to_none=True)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake.detach())
        d_loss = least_squares_discriminator_loss(d_real, d_fake)
        d_loss.backward()
        self.opt_d.step()

        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }


SPEC = ArchSpec(
    name="lsgan",
    description="Vanilla's MLP networks and step with least-squares losses on raw outputs (targets 1/0, D loss halved), Adam 2e-4.",
    image_size=28,
    config=LSGANConfig,
    build=LSGAN,
)
