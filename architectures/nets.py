"""Networks shared by several architectures."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils import parametrize


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



class ConvGenerator(nn.Module):
    """The study's DCGAN generator: Linear -> 128 x S/4 x S/4, two (Upsample, Conv) blocks, Tanh.

    The first BatchNorm2d has the default eps; the two after the convolutions are built as
    ``BatchNorm2d(n, 0.8)`` in the study (eps=0.8), kept by ``bn_eps``.
    """

    def __init__(self, latent_dim: int = 100, image_size: int = 32, bn_eps: float = 0.8):
        super().__init__()
        self.init_size = image_size // 4
        self.l1 = nn.Sequential(nn.Linear(latent_dim, 128 * self.init_size**2))
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, 3, stride=1, padding=1),
            nn.BatchNorm2d(128, eps=bn_eps),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, stride=1, padding=1),
            nn.BatchNorm2d(64, eps=bn_eps),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 1, 3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        out = self.l1(z).view(z.shape[0], 128, self.init_size, self.init_size)
        return self.conv_blocks(out)


class ConvDiscriminator(nn.Module):
    """The study's DCGAN discriminator: four stride-2 conv blocks 1 -> 16 -> 32 -> 64 -> 128, Linear.

    Each block is Conv2d(3, stride 2, pad 1) -> LeakyReLU(0.2) -> Dropout2d -> BatchNorm2d
    (no BatchNorm in the first block), as in the study. The options turn it into other
    discriminators with the same conv/linear shapes: ``batch_norm=False`` and ``dropout=0``
    drop those layers, ``spectral_norm=True`` wraps every conv and linear layer in spectral
    normalization, and ``sigmoid=False`` outputs logits.
    """

    def __init__(
        self,
        image_size: int = 32,
        sigmoid: bool = True,
        batch_norm: bool = True,
        dropout: float = 0.25,
        spectral_norm: bool = False,
        bn_eps: float = 0.8,
    ):
        super().__init__()

        def wrap(layer: nn.Module) -> nn.Module:
            return nn.utils.parametrizations.spectral_norm(layer) if spectral_norm else layer

        def block(n_in: int, n_out: int, bn: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [wrap(nn.Conv2d(n_in, n_out, 3, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout2d(dropout))
            if bn and batch_norm:
                layers.append(nn.BatchNorm2d(n_out, eps=bn_eps))
            return layers

        self.model = nn.Sequential(
            *block(1, 16, bn=False),
            *block(16, 32, bn=True),
            *block(32, 64, bn=True),
            *block(64, 128, bn=True),
        )
        ds_size = image_size // 2**4
        head: list[nn.Module] = [wrap(nn.Linear(128 * ds_size**2, 1))]
        if sigmoid:
            head.append(nn.Sigmoid())
        self.adv_layer = nn.Sequential(*head)

    def forward(self, img: Tensor) -> Tensor:
        return self.adv_layer(self.model(img).flatten(1))


def dcgan_init(module: nn.Module) -> None:
    """Initialise like the study's ``weights_init_normal``; use as ``net.apply(dcgan_init)``.

    Conv weights ~ N(0, 0.02) (biases keep PyTorch's default), BatchNorm2d weights
    ~ N(1, 0.02) and biases 0. The study matched class names containing "Conv" and
    "BatchNorm2d"; matching by type does the same for these networks without also
    catching our ``ConvGenerator``/``ConvDiscriminator`` containers. Apply it before
    spectral normalization, which reparametrizes the weight it would write to.
    """
    if parametrize.is_parametrized(module, "weight"):
        # Writing to a parametrized weight would silently change nothing.
        raise ValueError(f"dcgan_init must run before {type(module).__name__}'s weight is parametrized")
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight.data, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight.data, 1.0, 0.02)
        nn.init.constant_(module.bias.data, 0.0)
