"""Objectives shared by several architectures, on raw discriminator outputs (logits or scores).

Every function takes the discriminator's outputs, not images, and returns a scalar loss
to minimise, so an architecture's step reads as "forward, loss, backward, step". The
study's Sigmoid + BCE architectures (vanilla, dcgan) call ``F.binary_cross_entropy``
themselves; new code uses these numerically stable forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.contract import SeedStackOps


def wasserstein_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Return ``-mean(D(real)) + mean(D(fake))``, the negated Wasserstein estimate."""
    return -real_scores.mean() + fake_scores.mean()


def wasserstein_generator_loss(fake_scores: Tensor) -> Tensor:
    """Return ``-mean(D(fake))``."""
    return -fake_scores.mean()


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """Return ``mean((||grad D(x)||_2 - 1)^2)`` at random interpolates ``x`` of real and fake.

    The graph is kept (``create_graph=True``) so the penalty can be backpropagated into
    the critic's parameters; ``fake`` should be detached.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(x)
    (grad,) = torch.autograd.grad(scores, x, grad_outputs=torch.ones_like(scores), create_graph=True)
    return _penalty(grad)


def _penalty(grad: Tensor) -> Tensor:
    """``mean((||grad||_2 - 1)^2)`` over the rows of a batch of critic input gradients."""
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def stacked_gradient_penalty(stack: SeedStackOps, real: Tensor, fake: Tensor) -> Tensor:
    """:func:`gradient_penalty` for every seed of ``stack`` (batches (S, B, ...)): penalties (S,).

    Each seed draws its interpolation weights from its own generator as the single run draws
    them; the seeds' critics are independent, so one gradient of all scores gives each its own.
    """
    alpha = stack.rand(real.shape[1], *([1] * (real.dim() - 2)), device=real.device, dtype=real.dtype)
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = stack.network("discriminator")(x)
    (grad,) = torch.autograd.grad(scores, x, grad_outputs=torch.ones_like(scores), create_graph=True)
    return stack.per_seed(_penalty, grad)


def least_squares_discriminator_loss(
    real_out: Tensor, fake_out: Tensor, real_target: float = 1.0, fake_target: float = 0.0
) -> Tensor:
    """Return ``(mse(D(real), real_target) + mse(D(fake), fake_target)) / 2``.

    Halved like vanilla's averaged BCE (and PyTorch-GAN's lsgan), so D and G losses are
    on comparable scales in the logs.
    """
    real_loss = F.mse_loss(real_out, torch.full_like(real_out, real_target))
    fake_loss = F.mse_loss(fake_out, torch.full_like(fake_out, fake_target))
    return (real_loss + fake_loss) / 2


def least_squares_generator_loss(fake_out: Tensor, target: float = 1.0) -> Tensor:
    """Return ``mse(D(fake), target)`` (not halved, as in PyTorch-GAN's lsgan)."""
    return F.mse_loss(fake_out, torch.full_like(fake_out, target))


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Return ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """Return ``-mean(D(fake))``."""
    return -fake_logits.mean()


def probability_bce(probs: Tensor, target: Tensor) -> Tensor:
    """The study's ``BCELoss`` on Sigmoid outputs, never in reduced precision.

    Autocast refuses ``binary_cross_entropy`` on CUDA (it is unsafe in half precision), so
    under ``--precision bf16`` the loss is computed outside autocast; in fp32 it is exactly
    ``F.binary_cross_entropy``.
    """
    if probs.dtype in (torch.float16, torch.bfloat16):
        probs = probs.float()
    with torch.autocast(probs.device.type, enabled=False):
        return F.binary_cross_entropy(probs, target.to(probs.dtype))


def bce_discriminator_loss(real_probs: Tensor, fake_probs: Tensor) -> Tensor:
    """The study's ``(BCE(D(real), 1) + BCE(D(fake), 0)) / 2`` on Sigmoid outputs."""
    return (probability_bce(real_probs, torch.ones_like(real_probs))
            + probability_bce(fake_probs, torch.zeros_like(fake_probs))) / 2


def bce_generator_loss(fake_probs: Tensor) -> Tensor:
    """The study's ``BCE(D(G(z)), 1)`` on Sigmoid outputs."""
    return probability_bce(fake_probs, torch.ones_like(fake_probs))
