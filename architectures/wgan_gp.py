"""wgan-gp: WGAN with a gradient penalty instead of weight clipping (Gulrajani et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from architectures.losses import gradient_penalty, wasserstein_critic_loss, wasserstein_generator_loss
from architectures.nets import MLPDiscriminator, MLPGenerator
from bench.contract import GAN, ArchSpec, GANConfig
from bench.errors import UsageError


@dataclass
class WGANGPConfig(GANConfig):
    lr: float = 1e-4
    b1: float = 0.5
    b2: float = 0.9
    n_critic: int = 5
    lambda_gp: float = 10.0
    bn_eps: float = 0.8


class WGANGP(GAN):
    """wgan's step and schedule, with the penalty added to the critic loss and no clipping."""

    def __init__(self, cfg: WGANGPConfig, device: torch.device):
        if cfg.n_critic < 1:
            raise UsageError(f"n_critic must be at least 1, got {cfg.n_critic}")
        self.latent_dim = cfg.latent_dim
        self.n_critic = cfg.n_critic
        self.lambda_gp = cfg.lambda_gp
        self.generator = MLPGenerator(cfg.latent_dim, 28, cfg.bn_eps).to(device)
        self.discriminator = MLPDiscriminator(28, sigmoid=False).to(device)
        betas = (cfg.b1, cfg.b2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas)
        # The latest generator loss, returned on batches without a generator step.
        self._g_loss: Tensor | None = None

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)

        self.opt_d.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = self.generator(z)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake)
        gp = gradient_penalty(self.discriminator, real, fake)
        d_loss = wasserstein_critic_loss(d_real, d_fake) + self.lambda_gp * gp
        d_loss.backward()
        self.opt_d.step()

        # Counted in batches like wgan, so the two differ only in the Lipschitz constraint.
        if self.batch_in_epoch(step) % self.n_critic == 0:
            self.opt_g.zero_grad(set_to_none=True)
            g_loss = wasserstein_generator_loss(self.discriminator(self.generator(z)))
            g_loss.backward()
            self.opt_g.step()
            self._g_loss = g_loss.detach()
        elif self._g_loss is None:
            # Resumed between generator steps: the generator's loss on this batch as it stands.
            self._g_loss = wasserstein_generator_loss(d_fake.detach())

        return {
            "d_loss": d_loss.detach(),
            "g_loss": self._g_loss,
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
            "gp": gp.detach(),
        }


    def extra_state(self) -> dict[str, Tensor]:
        return {} if self._g_loss is None else {"g_loss": self._g_loss}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self._g_loss = state.get("g_loss")


SPEC = ArchSpec(
    name="wgan-gp",
    description="Same networks as wgan; differs only in how the Lipschitz constraint is enforced: gradient penalty (lambda 10) instead of clipping, Adam 1e-4.",
    image_size=28,
    config=WGANGPConfig,
    build=WGANGP,
)
