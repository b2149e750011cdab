"""wgan-gp: WGAN with a gradient penalty instead of weight clipping (Gulrajani et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from bench.architectures.losses import gradient_penalty, stacked_gradient_penalty, wasserstein_critic_loss
from bench.architectures.wgan import WGAN
from bench.contract import ArchSpec, GANConfig, SeedStackOps, at_least, between, positive


@dataclass
class WGANGPConfig(GANConfig):
    lr: float = field(default=1e-4, metadata=positive())
    b1: float = field(default=0.5, metadata=between(0, 1))
    b2: float = field(default=0.9, metadata=between(0, 1))
    n_critic: int = field(default=5, metadata=at_least(1))
    lambda_gp: float = field(default=10.0, metadata=at_least(0))
    bn_eps: float = field(default=0.8, metadata=positive())


class WGANGP(WGAN):
    """wgan's networks, step and schedule (counted in batches like wgan, so the two differ only
    in the Lipschitz constraint): the penalty added to the critic loss, no clipping, Adam."""

    def make_optimizers(self, cfg: WGANGPConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        betas = (cfg.b1, cfg.b2)
        return (torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas))

    def critic_loss(
        self, real: Tensor, fake: Tensor, d_real: Tensor, d_fake: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        gp = gradient_penalty(self.discriminator, real, fake)
        return wasserstein_critic_loss(d_real, d_fake) + self.cfg.lambda_gp * gp, {"gp": gp.detach()}

    def constrain_critic(self) -> None:
        """The penalty is the constraint: nothing to do after the update."""

    def stack_critic_loss(
        self, stack: SeedStackOps, real: Tensor, fake: Tensor, d_real: Tensor, d_fake: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        gp = stacked_gradient_penalty(stack, real, fake)
        loss = stack.per_seed(wasserstein_critic_loss, d_real, d_fake) + self.cfg.lambda_gp * gp
        return loss, {"gp": gp.detach()}

    def stack_constrain_critic(self, stack: SeedStackOps) -> None:
        """The penalty is the constraint: nothing to do after the update."""


SPEC = ArchSpec(
    name="wgan-gp",
    description=(
        "Same networks as wgan; differs only in how the Lipschitz constraint is enforced: "
        "gradient penalty (lambda 10) instead of clipping, Adam 1e-4."
    ),
    image_size=28,
    config=WGANGPConfig,
    build=WGANGP,
)
