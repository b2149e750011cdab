"""sngan: dcgan's generator, a spectrally normalized discriminator and the hinge loss (Miyato et al., 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from architectures.losses import hinge_discriminator_loss, hinge_generator_loss
from architectures.nets import ConvDiscriminator, ConvGenerator, dcgan_init
from bench.contract import GAN, ArchSpec, GANConfig


@dataclass
class SNGANConfig(GANConfig):
    lr: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    bn_eps: float = 0.8


class SNGAN(GAN):
    """dcgan's step order (G first, then D on the same fake batch), so the two differ only in D and loss."""

    graph_safe = True  # the same kernels every step, whatever its index

    def __init__(self, cfg: SNGANConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = ConvGenerator(cfg.latent_dim, 32, cfg.bn_eps).to(device)
        # Spectral norm alone regularises D, as in the paper: BatchNorm after it would rescale
        # activations and undo the per-layer Lipschitz bound. The hinge loss takes logits.
        self.discriminator = ConvDiscriminator(
            32, sigmoid=False, batch_norm=False, dropout=0.0, spectral_norm=True
        ).to(device)
        # dcgan's init for the generator it shares; the discriminator keeps PyTorch's default,
        # whose scale spectral normalization divides out anyway.
        self.generator.apply(dcgan_init)
        betas = (cfg.b1, cfg.b2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas)

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)

        self.opt_g.zero_grad(set_to_none=True)
        fake = self.generator(z)
        g_loss = hinge_generator_loss(self.discriminator(fake))
        g_loss.backward()
        self.opt_g.step()

        self.opt_d.zero_grad(set_to_none=True)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake.detach())
        d_loss = hinge_discriminator_loss(d_real, d_fake)
        d_loss.backward()
        self.opt_d.step()

        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }


SPEC = ArchSpec(
    name="sngan",
    description="dcgan's generator with a spectral-norm discriminator (no BatchNorm, no Dropout) and hinge loss, Adam 2e-4, 32x32.",
    image_size=32,
    config=SNGANConfig,
    build=SNGAN,
)
