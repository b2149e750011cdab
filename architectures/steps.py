"""The generator-first step shared by vanilla, dcgan, lsgan and sngan.

The study's vanilla and dcgan update G on a fresh fake batch, then D on that same batch,
detached. The architectures of this family differ only in their networks, optimizers and
losses, so they subclass :class:`GeneratorFirstGAN` and write just those; the step itself is
the study's computed with less work (``bench.perf.study.study_step`` is the study's code
written out; ``tests/unit/test_architectures.py`` checks they agree):

- each backward goes only where it is used: the generator loss into G's parameters (the
  study also filled D's gradients, which its discriminator step then zeroed), the
  discriminator loss into D's (the study's ``detach``);
- with ``one_discriminator_pass``, one D forward over fake and real together serves the
  generator loss and both discriminator terms. Only where D's rows do not interact and a
  pass changes nothing in D (no BatchNorm, Dropout or spectral norm's power iteration):
  then D does not change between the study's D(fake) in the generator step and its D(real),
  D(fake.detach()) in the discriminator step, so the three passes give the same values.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bench.contract import GAN, GANConfig, SeedStackOps, between, positive


@dataclass
class AdamGANConfig(GANConfig):
    """The hyperparameters this family shares: the study's Adam (lr, betas) for both networks, and the
    BatchNorm eps of its generators (0.8: the study passed it where momentum was meant)."""

    lr: float = field(default=2e-4, metadata=positive())
    b1: float = field(default=0.5, metadata=between(0, 1))
    b2: float = field(default=0.999, metadata=between(0, 1))
    bn_eps: float = field(default=0.8, metadata=positive())


class GeneratorFirstGAN(GAN):
    """A generator step, then a discriminator step on the same fake batch.

    Subclasses build ``generator``, ``discriminator``, ``opt_g`` and ``opt_d`` and define the
    two losses (methods, or loss functions from ``bench.architectures.losses`` bound with
    ``staticmethod``); the scores they receive are D's outputs as the network returns them.
    Stacked (:meth:`stack_step`), the losses run once per seed under ``torch.func.vmap``: they
    must be functions of the scores alone, drawing no random numbers of their own.
    """

    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    #: True where one D pass may serve all three of the study's (see the module docstring).
    one_discriminator_pass: bool = False
    graph_safe = True  # the same kernels every step, whatever its index

    @abc.abstractmethod
    def generator_loss(self, d_fake: Tensor) -> Tensor:
        """The generator's loss from D's scores of the fake batch."""

    @abc.abstractmethod
    def discriminator_loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """The discriminator's loss from its scores of the real and the (detached) fake batch."""

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        n = real.shape[0]
        z = torch.randn(n, self.latent_dim, device=real.device)
        g_params = list(self.generator.parameters())
        d_params = list(self.discriminator.parameters())

        self.opt_g.zero_grad(set_to_none=True)
        fake = self.generator(z)
        if self.one_discriminator_pass:
            # In fake's dtype: under bf16 autocast the batch goes straight into D's first matmul.
            scores = self.discriminator(torch.cat([fake, real.to(fake.dtype)]))
            g_fake, d_real = scores[:n], scores[n:]
            d_fake = g_fake
        else:
            g_fake = self.discriminator(fake)
        g_loss = self.generator_loss(g_fake)
        # With one pass, the graph through D is kept for the discriminator's backward below.
        g_loss.backward(inputs=g_params, retain_graph=self.one_discriminator_pass)
        self.opt_g.step()

        self.opt_d.zero_grad(set_to_none=True)
        if not self.one_discriminator_pass:
            d_real = self.discriminator(real)
            d_fake = self.discriminator(fake.detach())
        d_loss = self.discriminator_loss(d_real, d_fake)
        # Into D only, as the study's fake.detach(): G's weights have just been updated in place.
        d_loss.backward(inputs=d_params)
        self.opt_d.step()

        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }

    def stack_step(self, stack: SeedStackOps, real: Tensor, step: int) -> dict[str, Tensor]:
        """:meth:`train_step` for every seed of ``stack`` at once: the same passes, losses and updates.

        Each seed draws its latents (and D's dropout masks, inside D) from its own generator in
        the single run's order; the losses are computed per seed, so each seed's gradients are
        its own.
        """
        n = real.shape[1]
        z = stack.randn(n, self.latent_dim, device=real.device)
        opt_g, opt_d = stack.optimizers()["opt_g"], stack.optimizers()["opt_d"]
        generator, discriminator = stack.network("generator"), stack.network("discriminator")

        opt_g.zero_grad(set_to_none=True)
        fake = generator(z)
        if self.one_discriminator_pass:
            scores = discriminator(torch.cat([fake, real.to(fake.dtype)], dim=1))
            g_fake, d_real = scores[:, :n], scores[:, n:]
            d_fake = g_fake
        else:
            g_fake = discriminator(fake)
        g_loss = stack.per_seed(self.generator_loss, g_fake)
        stack.backward(g_loss, "generator", retain_graph=self.one_discriminator_pass)
        opt_g.step()

        opt_d.zero_grad(set_to_none=True)
        if not self.one_discriminator_pass:
            d_real = discriminator(real)
            d_fake = discriminator(fake.detach())
        d_loss = stack.per_seed(self.discriminator_loss, d_real, d_fake)
        stack.backward(d_loss, "discriminator")
        opt_d.step()

        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().flatten(1).mean(1),
            "d_fake": d_fake.detach().flatten(1).mean(1),
        }


def adam_pair(gan: GAN, lr: float, betas: tuple[float, float]) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for G and for D, fused: one kernel for every parameter of a network instead of a
    loop of small ops (the same update, to float rounding)."""
    return (torch.optim.Adam(gan.generator.parameters(), lr=lr, betas=betas, fused=True),
            torch.optim.Adam(gan.discriminator.parameters(), lr=lr, betas=betas, fused=True))
