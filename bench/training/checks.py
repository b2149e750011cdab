"""The model built for a run, and the checks of the user's settings that need it built.

A config's declared ranges (:mod:`bench.config`) catch most bad hyperparameters before
anything is built; these catch the rest before the first batch: a plugin that declares no
ranges and whose networks or optimizers refuse an overridden value, and batch sizes that
leave BatchNorm a batch of one image.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from bench.config import RunConfig
from bench.contract import GAN, ArchSpec, GANConfig
from bench.errors import PluginError, UsageError

#: What networks and optimizers raise for values they cannot take: ValueError (torch.optim's
#: "Invalid learning rate"), TypeError (a size that overflows), RuntimeError (a negative or
#: unallocatable size).
_REFUSALS = (ValueError, TypeError, RuntimeError, OverflowError, MemoryError)


def build_gan(spec: ArchSpec, hparams: GANConfig, device: torch.device, overridden: Collection[str] = ()) -> GAN:
    """Build ``spec``'s model; its exception is a :class:`PluginError` naming the architecture.

    Args:
        overridden: the hyperparameters the user set (``--set``, ``--batch-size``). With any, a
            refusal (an optimizer refusing ``lr=nan``, a size that overflows) is most likely the
            user's value rather than the plugin's fault: it is raised as it is, for the caller to
            report as the user's.
    """
    try:
        return spec.build(hparams, device)
    except Exception as exc:  # a plugin may raise anything
        if overridden and isinstance(exc, _REFUSALS):
            raise
        raise PluginError(spec.name, f"build raised {type(exc).__name__}: {exc}") from exc


def build_for_run(spec: ArchSpec, hparams: GANConfig, cfg: RunConfig, device: torch.device, n_images: int) -> GAN:
    """Build ``spec``'s model for a run on ``n_images`` training images, refusing the user's settings it cannot take.

    Raises:
        UsageError: the build refused an overridden hyperparameter, or the batch size leaves
            BatchNorm a batch of one image.
        PluginError: the build failed with the architecture's own settings.
    """
    overridden = _overrides_text(cfg)
    try:
        gan = build_gan(spec, hparams, device, overridden=[overridden] if overridden else ())
    except _REFUSALS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{spec.name} cannot be built with {overridden} ({type(exc).__name__}: {reason}); "
                         f"choose other values") from None
    check_batch_norm(gan, spec.name, hparams.batch_size, n_images, cfg)
    return gan


def _overrides_text(cfg: RunConfig) -> str:
    """Return the hyperparameters the user set, as given: ``--set lr=-1, --batch-size 8`` (empty if none)."""
    given = [f"--set {key}={value}" for key, value in cfg.hparams.items()]
    if cfg.batch_size is not None:
        given.append(f"--batch-size {cfg.batch_size}")
    return ", ".join(given)


def _batch_text(cfg: RunConfig, batch_size: int) -> str:
    if cfg.batch_size is not None:
        return f"--batch-size {batch_size}"
    if "batch_size" in cfg.hparams:
        return f"--set batch_size={batch_size}"
    return f"batch size {batch_size}"


def uses_batch_norm(gan: GAN) -> bool:
    """Return whether any network of ``gan`` holds a BatchNorm layer (which cannot train on one image)."""
    return any(isinstance(m, _BatchNorm) for net in gan.networks().values() for m in net.modules())


def check_batch_norm(gan: GAN, name: str, batch_size: int, n_images: int, cfg: RunConfig) -> None:
    """Refuse a batch size that gives BatchNorm a batch of one image, at once or at an epoch's end."""
    if not uses_batch_norm(gan):
        return
    given = _batch_text(cfg, batch_size)
    if batch_size == 1:
        raise UsageError(f"{given} cannot train {name}: its BatchNorm layers need at least 2 images per batch; "
                         f"choose a batch size of 2 or more")
    if n_images % batch_size != 1:
        return
    if cfg.train_subset is not None:
        images, fix = f"--train-subset {n_images}", f"--train-subset {n_images - 1}, or another batch size"
    else:
        alternative = next(b for b in range(batch_size + 1, n_images + 1) if n_images % b != 1)
        images, fix = f"the {n_images} training images", f"another batch size, e.g. --batch-size {alternative}"
    raise UsageError(f"{given} with {images} leaves a last batch of 1 image in every epoch, which {name}'s "
                     f"BatchNorm layers cannot train on; choose {fix}")
