"""mlp-hinge: an example third-party architecture for gan-bench.

A small MLP GAN trained with the hinge loss. It depends only on ``bench.contract``: the
networks are written here rather than imported from gan-bench's own ``architectures``
package, whose internals are not part of the plugin contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.contract import GAN, ArchSpec, GANConfig, SeedStackOps, at_least, between, positive

IMAGE_SIZE = 28


@dataclass
class MLPHingeConfig(GANConfig):
    """Defaults; each field can be overridden by name when the run is configured, within its declared range."""

    lr: float = field(default=2e-4, metadata=positive())
    b1: float = field(default=0.5, metadata=between(0, 1))
    b2: float = field(default=0.999, metadata=between(0, 1))
    hidden: int = field(default=512, metadata=at_least(2))  # the generator's first layer has hidden // 2 units


class Generator(nn.Module):
    """latent -> hidden/2 -> hidden -> 28*28, BatchNorm and LeakyReLU, Tanh to land in [-1, 1]."""

    def __init__(self, latent_dim: int, hidden: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(latent_dim, hidden // 2),
            nn.BatchNorm1d(hidden // 2),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden // 2, hidden),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, IMAGE_SIZE * IMAGE_SIZE),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)


class Discriminator(nn.Module):
    """28*28 -> hidden -> hidden/2 -> 1 logit (no Sigmoid: the hinge loss takes raw outputs)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(IMAGE_SIZE * IMAGE_SIZE, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden // 2),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, img: Tensor) -> Tensor:
        return self.model(img)


class MLPHinge(GAN):
    """Discriminator step first, then the generator against the updated discriminator."""

    def __init__(self, cfg: MLPHingeConfig, device: torch.device):
        self.latent_dim = cfg.latent_dim
        self.generator = Generator(cfg.latent_dim, cfg.hidden).to(device)
        self.discriminator = Discriminator(cfg.hidden).to(device)
        betas = (cfg.b1, cfg.b2)
        # Named opt_g and opt_d, so the default GAN.optimizers() finds them for checkpoints.
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=betas)

    # The losses, written for one seed's scores: train_step and stack_step share them.
    @staticmethod
    def discriminator_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()

    @staticmethod
    def generator_loss(d_fake: Tensor) -> Tensor:
        return -d_fake.mean()

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        fake = self.generator(z)

        self.opt_d.zero_grad(set_to_none=True)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake.detach())
        d_loss = self.discriminator_loss(d_real, d_fake)
        d_loss.backward()
        self.opt_d.step()

        # One generator forward serves both updates: the generator has not changed since.
        self.opt_g.zero_grad(set_to_none=True)
        g_loss = self.generator_loss(self.discriminator(fake))
        g_loss.backward()
        self.opt_g.step()

        # Detached scalar tensors, no .item(): the runner reads them only when it logs.
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().mean(),
            "d_fake": d_fake.detach().mean(),
        }


    def stack_step(self, stack: SeedStackOps, real: Tensor, step: int) -> dict[str, Tensor]:
        """train_step for several seeds at once (``--stack``): every tensor has a leading seed dimension.

        The networks, optimizers and random streams are the stack's; ``self`` gives only the losses.
        """
        z = stack.randn(real.shape[1], self.latent_dim, device=real.device)  # each seed's own draw
        generator, discriminator = stack.network("generator"), stack.network("discriminator")
        opt_g, opt_d = stack.optimizers()["opt_g"], stack.optimizers()["opt_d"]
        fake = generator(z)

        opt_d.zero_grad(set_to_none=True)
        d_real = discriminator(real)
        d_fake = discriminator(fake.detach())
        d_loss = stack.per_seed(self.discriminator_loss, d_real, d_fake)  # shape (S,): one loss per seed
        stack.backward(d_loss, "discriminator")
        opt_d.step()

        opt_g.zero_grad(set_to_none=True)
        g_loss = stack.per_seed(self.generator_loss, discriminator(fake))
        stack.backward(g_loss, "generator")
        opt_g.step()

        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().flatten(1).mean(1),
            "d_fake": d_fake.detach().flatten(1).mean(1),
        }


SPEC = ArchSpec(
    name="mlp-hinge",
    description="Example plugin: a small MLP GAN with the hinge loss, Adam 2e-4, D step first.",
    image_size=IMAGE_SIZE,
    config=MLPHingeConfig,
    build=MLPHinge,
)
