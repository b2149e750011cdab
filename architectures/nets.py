"""Networks shared by several architectures."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize


def _at_least_fp32(x: Tensor) -> Tensor:
    """``x`` in float32 if it is in a lower precision (bf16/fp16 under autocast), else unchanged."""
    return x.float() if x.is_floating_point() and x.element_size() < 4 else x


def _run_with_fp32_head(layers: nn.Sequential, head: int, x: Tensor) -> Tensor:
    """Run ``layers``; from index ``head`` on (the output layer and any Sigmoid) in at least
    float32, with autocast off.

    At float32 this is exactly running ``layers``. Under bf16 autocast it keeps the score in
    float32: a bf16 probability above 1 - 2**-9 rounds to 1, and the study's
    ``binary_cross_entropy`` then saturates its log(1 - p) at the clamp. It is also faster:
    a 1-wide output layer is dominated by the low-precision kernels' per-call cost.
    """
    remaining = iter(layers)  # not layers[:head]: slicing builds a new Sequential every call
    for layer in itertools.islice(remaining, head):
        x = layer(x)
    with torch.autocast(x.device.type, enabled=False):
        x = _at_least_fp32(x)
        for layer in remaining:
            x = layer(x)
    return x


def upsample_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv(Upsample(scale_factor=2, mode="nearest")(x))`` for a 3x3, stride-1, padding-1 ``conv``.

    The same function computed without the upsampled tensor: each output pixel of a
    nearest x2 upsample followed by a 3x3 convolution sees a 2x2 patch of ``x`` through
    sums of the 3x3 weights (rows/columns [W2, W1+W2, W0+W1, W0] over the four output
    phases), which is a stride-2 transposed convolution with a 4x4 kernel built from
    ``conv.weight``. 16 multiply-adds per input pixel instead of 36, and the 4x larger
    upsampled activation is never written. Gradients flow to ``conv.weight`` through the
    kernel's construction, so parameters, state-dict keys and the math stay the study's;
    only the float summation order changes.
    """
    w = F.pad(conv.weight, (1, 1, 1, 1))            # (out, in, 5, 5): zero rows/cols around W
    w = w[..., :-1, :] + w[..., 1:, :]              # rows [W0, W0+W1, W1+W2, W2]
    w = w[..., :-1] + w[..., 1:]                    # cols likewise
    kernel = w.flip(-2, -1).transpose(0, 1)         # (in, out, 4, 4), transposed-conv layout
    return F.conv_transpose2d(x, kernel, conv.bias, stride=2, padding=1)


def _fusable(up: nn.Module, conv: nn.Module) -> bool:
    """Whether ``up`` then ``conv`` is the nearest x2 upsample + 3x3 same conv of :func:`upsample_conv`."""
    return (
        isinstance(up, nn.Upsample) and up.mode == "nearest" and up.size is None
        and up.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0))
        and type(conv) is nn.Conv2d and not parametrize.is_parametrized(conv)
        and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
    )


def _memory_format(conv: nn.Conv2d) -> torch.memory_format:
    """channels_last if ``conv`` was converted with ``.to(memory_format=torch.channels_last)``."""
    # The stored weight: reading a spectral-normalized ``conv.weight`` would run a power iteration.
    weight = conv.parametrizations.weight.original if parametrize.is_parametrized(conv, "weight") else conv.weight
    if not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


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
        self._head = len(layers) - 1  # the output Linear (and the Sigmoid) run in float32
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)

    def forward(self, img: Tensor) -> Tensor:
        return _run_with_fp32_head(self.model, self._head, img)



class ConvGenerator(nn.Module):
    """The study's DCGAN generator: Linear -> 128 x S/4 x S/4, two (Upsample, Conv) blocks, Tanh.

    The first BatchNorm2d has the default eps; the two after the convolutions are built as
    ``BatchNorm2d(n, 0.8)`` in the study (eps=0.8), kept by ``bn_eps``.

    ``conv_blocks`` holds the study's layers in the study's order; ``forward`` runs each
    Upsample + Conv2d pair as one :func:`upsample_conv` (same function, fewer operations)
    unless ``fuse_upsample`` is False. Convert with ``.to(memory_format=torch.channels_last)``
    and the activations follow.
    """

    def __init__(self, latent_dim: int = 100, image_size: int = 32, bn_eps: float = 0.8, fuse_upsample: bool = True):
        super().__init__()
        self.init_size = image_size // 4
        self.fuse_upsample = fuse_upsample
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
        out = out.contiguous(memory_format=_memory_format(self.conv_blocks[2]))
        if not self.fuse_upsample:
            return self.conv_blocks(out)
        layers, i = self.conv_blocks, 0
        while i < len(layers):
            if i + 1 < len(layers) and _fusable(layers[i], layers[i + 1]):
                out, i = upsample_conv(out, layers[i + 1]), i + 2
            else:
                out, i = layers[i](out), i + 1
        return out


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
        img = img.contiguous(memory_format=_memory_format(self.model[0]))
        return _run_with_fp32_head(self.adv_layer, 0, self.model(img).flatten(1))


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
