"""dcgan: the study's convolutional GAN at 32x32, faithful by default (init N(0, 0.02), Sigmoid + BCE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from architectures.losses import probability_bce
from architectures.nets import ConvDiscriminator, ConvGenerator, dcgan_init
from bench.contract import GAN, ArchSpec, GANConfig


@dataclass
class DCGANConfig(GANConfig):
    lr: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    bn_eps: float = 0.8
    dropout: float = 0.25


class DCGAN(GAN):
    """Generator step first, then the discriminator on the same fake batch, detached.

    The study's step, computed with less work (``bench.perf.study_step`` is the study's
    code written out; ``tests/test_perf.py`` checks the two agree): the generator's
    Upsample + Conv2d pairs run as one transposed convolution (``nets.upsample_conv``),
    both networks and their activations are channels_last (the layout oneDNN's
    convolutions run fastest in), the generator loss is backpropagated into G's parameters
    only (the study also filled D's gradients, then zeroed them), and Adam is fused. Unlike
    vanilla, D's three passes stay separate: its BatchNorm couples the rows of a batch and
    its Dropout2d draws new masks on every pass, in the study's order.
    """

    graph_safe = True  # the same kernels every step, whatever its index

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
        betas = (cfg.b1, cfg.b2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas, fused=True)

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        n = real.shape[0]
        valid = torch.ones(n, 1, device=real.device)
        fake_label = torch.zeros(n, 1, device=real.device)
        z = torch.randn(n, self.latent_dim, device=real.device)

        self.opt_g.zero_grad(set_to_none=True)
        fake = self.generator(z)
        g_loss = probability_bce(self.discriminator(fake), valid)
        g_loss.backward(inputs=list(self.generator.parameters()))
        self.opt_g.step()

        self.opt_d.zero_grad(set_to_none=True)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake.detach())
        d_loss = (probability_bce(d_real, valid) + probability_bce(d_fake, fake_label)) / 2
        d_loss.backward()
        self.opt_d.step()

        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }


SPEC = ArchSpec(
    name="dcgan",
    description="The study's DCGAN at 32x32: upsample+conv G, Dropout2d D, N(0, 0.02) init, Sigmoid + BCE, Adam 2e-4.",
    image_size=32,
    config=DCGANConfig,
    build=DCGAN,
)
