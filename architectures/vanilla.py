"""vanilla: the study's MLP GAN, faithful by default (BatchNorm eps 0.8, Sigmoid + BCE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from architectures.losses import probability_bce
from architectures.nets import MLPDiscriminator, MLPGenerator
from bench.contract import GAN, ArchSpec, GANConfig


@dataclass
class VanillaConfig(GANConfig):
    lr: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    bn_eps: float = 0.8


class Vanilla(GAN):
    """Generator step first, then the discriminator on the same fake batch, detached.

    The study's step, computed with less work (``bench.perf.study_step`` is the study's
    code written out; ``tests/test_perf.py`` checks the two agree):

    - one discriminator forward over fake and real together: D has no BatchNorm and no
      dropout, so rows do not interact, and D does not change between the study's D(fake)
      in the generator step and its D(real), D(fake.detach()) in the discriminator step;
      the generator loss and both discriminator terms read the same outputs;
    - each backward goes only where it is used: the generator loss into G's parameters (the
      study also filled D's gradients, which its discriminator step then zeroed), the
      discriminator loss into D's (the study's ``detach``);
    - fused Adam: one kernel for every parameter of a network instead of a loop of ops.
    """

    graph_safe = True  # the same kernels every step, whatever its index

    def __init__(self, cfg: VanillaConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = MLPGenerator(cfg.latent_dim, 28, cfg.bn_eps).to(device)
        self.discriminator = MLPDiscriminator(28, sigmoid=True).to(device)
        betas = (cfg.b1, cfg.b2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas, fused=True)

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        n = real.shape[0]
        valid = torch.ones(n, 1, device=real.device)
        fake_label = torch.zeros(n, 1, device=real.device)
        z = torch.randn(n, self.latent_dim, device=real.device)

        fake = self.generator(z)
        # In fake's dtype: under bf16 autocast the batch goes straight into D's first matmul.
        scores = self.discriminator(torch.cat([fake, real.to(fake.dtype)]))
        d_fake, d_real = scores[:n], scores[n:]

        self.opt_g.zero_grad(set_to_none=True)
        g_loss = probability_bce(d_fake, valid)
        # The graph through D is kept for the discriminator's backward below.
        g_loss.backward(inputs=list(self.generator.parameters()), retain_graph=True)
        self.opt_g.step()

        self.opt_d.zero_grad(set_to_none=True)
        d_loss = (probability_bce(d_real, valid) + probability_bce(d_fake, fake_label)) / 2
        # Into D only, as the study's fake.detach(): G's weights have just been updated in place.
        d_loss.backward(inputs=list(self.discriminator.parameters()))
        self.opt_d.step()

        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }


SPEC = ArchSpec(
    name="vanilla",
    description="The study's MLP GAN: BatchNorm eps 0.8, Sigmoid + BCE, Adam 2e-4, G step first.",
    image_size=28,
    config=VanillaConfig,
    build=Vanilla,
)
