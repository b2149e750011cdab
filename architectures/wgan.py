"""wgan: the study's Wasserstein GAN with weight clipping, faithful by default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from bench.architectures.losses import wasserstein_critic_loss, wasserstein_generator_loss
from bench.architectures.nets import MLPDiscriminator, MLPGenerator
from bench.contract import GAN, ArchSpec, GANConfig, SeedStackOps, at_least, positive
from bench.errors import UsageError


@dataclass
class WGANConfig(GANConfig):
    lr: float = field(default=5e-5, metadata=positive())
    n_critic: int = field(default=5, metadata=at_least(1))
    clip_value: float = field(default=0.01, metadata=positive())
    bn_eps: float = field(default=0.8, metadata=positive())


class WGAN(GAN):
    """A critic step and clip every batch; a generator step when the batch index *within the
    epoch* is a multiple of ``n_critic`` (the study's ``i % n_critic == 0``, ``i`` restarting each epoch).

    Variants of the critic (wgan-gp) override :meth:`make_optimizers`, :meth:`critic_loss`
    and :meth:`constrain_critic`; the schedule and the carried generator loss stay here. To
    train as a stack of seeds, a variant overrides each hook's stacked counterpart with it
    (:meth:`stack_critic_loss`, :meth:`stack_constrain_critic`).
    """

    stack_counterparts = {**GAN.stack_counterparts, "critic_loss": "stack_critic_loss",
                          "constrain_critic": "stack_constrain_critic"}

    def __init__(self, cfg: Any, device: torch.device):
        if cfg.n_critic < 1:
            raise UsageError(f"n_critic must be at least 1, got {cfg.n_critic}")
        self.cfg = cfg
        self.latent_dim = cfg.latent_dim
        self.n_critic = cfg.n_critic
        self.generator = MLPGenerator(cfg.latent_dim, 28, cfg.bn_eps).to(device)
        self.discriminator = MLPDiscriminator(28, sigmoid=False).to(device)
        self.opt_g, self.opt_d = self.make_optimizers(cfg)
        # The latest generator loss, returned on batches without a generator step.
        self._g_loss: Tensor | None = None

    def make_optimizers(self, cfg: WGANConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """The study's RMSprop for both networks."""
        return (torch.optim.RMSprop(self.generator.parameters(), lr=cfg.lr),
                torch.optim.RMSprop(self.discriminator.parameters(), lr=cfg.lr))

    def critic_loss(
        self, real: Tensor, fake: Tensor, d_real: Tensor, d_fake: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The critic's loss, and any extra (detached) outputs of the step."""
        return wasserstein_critic_loss(d_real, d_fake), {}

    def constrain_critic(self) -> None:
        """After each critic update: the study's weight clipping."""
        with torch.no_grad():
            for p in self.discriminator.parameters():
                p.clamp_(-self.cfg.clip_value, self.cfg.clip_value)

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)

        self.opt_d.zero_grad(set_to_none=True)
        # The study detaches G(z) here; no_grad gives the same values without building a graph.
        with torch.no_grad():
            fake = self.generator(z)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake)
        d_loss, extras = self.critic_loss(real, fake, d_real, d_fake)
        d_loss.backward()
        self.opt_d.step()
        self.constrain_critic()

        if self.batch_in_epoch(step) % self.n_critic == 0:
            self.opt_g.zero_grad(set_to_none=True)
            # A second generator forward on the same z, as in the study (its BatchNorm
            # running statistics are updated twice on these batches).
            g_loss = wasserstein_generator_loss(self.discriminator(self.generator(z)))
            g_loss.backward()
            self.opt_g.step()
            self._g_loss = g_loss.detach()
        elif self._g_loss is None:
            # Resumed between generator steps: report the generator's loss on this batch
            # as it stands (from the critic's pass before its update) rather than a made-up value.
            self._g_loss = wasserstein_generator_loss(d_fake.detach())

        return {
            "d_loss": d_loss.detach(),
            "g_loss": self._g_loss,
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
            **extras,
        }

    def stack_critic_loss(
        self, stack: SeedStackOps, real: Tensor, fake: Tensor, d_real: Tensor, d_fake: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`critic_loss` for every seed of ``stack``: losses (S,) and extra outputs (S,).

        Only the scores go through ``per_seed``: the loss reads nothing else, and ``per_seed``
        checks and copies every tensor it is given.
        """
        return stack.per_seed(wasserstein_critic_loss, d_real, d_fake), {}

    def stack_constrain_critic(self, stack: SeedStackOps) -> None:
        """:meth:`constrain_critic` for every seed of ``stack``: clipping is element-wise."""
        with torch.no_grad():
            for p in stack.parameters("discriminator"):
                p.clamp_(-self.cfg.clip_value, self.cfg.clip_value)

    def stack_step(self, stack: SeedStackOps, real: Tensor, step: int) -> dict[str, Tensor]:
        """:meth:`train_step` for every seed of ``stack`` at once; the carried generator loss is ``stack.extra``."""
        z = stack.randn(real.shape[1], self.latent_dim, device=real.device)
        opt_g, opt_d = stack.optimizers()["opt_g"], stack.optimizers()["opt_d"]
        generator, critic = stack.network("generator"), stack.network("discriminator")

        opt_d.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = generator(z)
        d_real = critic(real)
        d_fake = critic(fake)
        d_loss, extras = self.stack_critic_loss(stack, real, fake, d_real, d_fake)
        stack.backward(d_loss, "discriminator")
        opt_d.step()
        self.stack_constrain_critic(stack)

        if self.batch_in_epoch(step) % self.n_critic == 0:
            opt_g.zero_grad(set_to_none=True)
            g_loss = stack.per_seed(wasserstein_generator_loss, critic(generator(z)))
            stack.backward(g_loss, "generator")
            opt_g.step()
            stack.extra["g_loss"] = g_loss.detach()
        elif "g_loss" not in stack.extra:
            stack.extra["g_loss"] = stack.per_seed(wasserstein_generator_loss, d_fake.detach())

        return {
            "d_loss": d_loss.detach(),
            "g_loss": stack.extra["g_loss"],
            "d_real": d_real.detach().flatten(1).mean(1),
            "d_fake": d_fake.detach().flatten(1).mean(1),
            **extras,
        }

    def extra_state(self) -> dict[str, Tensor]:
        return {} if self._g_loss is None else {"g_loss": self._g_loss}

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        self._g_loss = state.get("g_loss")


SPEC = ArchSpec(
    name="wgan",
    description=(
        "The study's WGAN: vanilla MLP G, critic without Sigmoid, weight clip 0.01, "
        "RMSprop 5e-5, 5 critic steps per G step."
    ),
    image_size=28,
    config=WGANConfig,
    build=WGAN,
)
