"""Whether a model has blown up: non-finite weights, or finite weights whose products overflow."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from bench.contract import GAN


def weights_finite(networks: Iterable[torch.nn.Module]) -> bool:
    """True when no parameter holds a NaN or an infinity; one host sync.

    Through each parameter's min and max (NaN propagates into both), which is several times
    cheaper than ``isfinite(p).all()`` per parameter.
    """
    bounds = [torch.stack(torch.aminmax(p.detach())) for m in networks for p in m.parameters() if p.numel()]
    return not bounds or bool(torch.cat(bounds).isfinite().all())


@torch.no_grad()
def outputs_finite(gan: GAN, z: Tensor) -> bool:
    """True unless the networks turn ``z`` into non-finite images or scores: weights can stay
    finite while their products overflow. A network that cannot be called so is not judged."""
    try:
        images = gan.generate(z)
        was_training = gan.discriminator.training
        gan.discriminator.eval()
        try:
            scores = gan.discriminator(images.to(gan.device))
        finally:
            gan.discriminator.train(was_training)
    except Exception:
        return True
    return bool(torch.isfinite(images).all() and torch.isfinite(scores).all())


def model_finite(gan: GAN, z: Tensor) -> bool:
    """Neither the weights nor the networks' outputs for ``z`` hold a NaN or an infinity."""
    return weights_finite(gan.networks().values()) and outputs_finite(gan, z)
