"""Networks shared by several architectures."""

from __future__ import annotations

from torch import Tensor, nn


class MLPGenerator(nn.Module):
    """The study's MLP generator: 100 -> 128 -> 256 -> 512 -> 1024 -> S*S, Tanh.

    The BatchNorm1d layers are built as ``BatchNorm1d(n, 0.8)`` in the study, which sets
    eps=0.8 (the second positional argument is eps); ``bn_eps`` keeps that quirk by default.
    """

    def __init__(self, latent_dim: int = 100, image_size: int = 28, bn_eps: float = 0.8):
        super().__init__()
        self.image_size = image_size

        def block(n_in: int, n_out: int, normalize: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if normalize:
                layers.append(nn.BatchNorm1d(n_out, eps=bn_eps))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(latent_dim, 128, normalize=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, image_size * image_size),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z).view(z.shape[0], 1, self.image_size, self.image_size)


class MLPDiscriminator(nn.Module):
    """The study's MLP discriminator: S*S -> 512 -> 256 -> 1, LeakyReLU(0.2).

    With ``sigmoid=True`` (the study's vanilla) it outputs a probability; without, a score
    (a WGAN critic, or logits for losses in their numerically stable form).
    """

    def __init__(self, image_size: int = 28, sigmoid: bool = True):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(image_size * image_size, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
        ]
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)

    def forward(self, img: Tensor) -> Tensor:
        return self.model(img)

