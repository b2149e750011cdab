"""The classic FID on Inception-v3 features, on request (``--fid-backbone inception``).

On 28x28 digits the ImageNet network's features say little, and a FID computed on them is
not comparable to the classifier-feature FID the suite reports; it is here for comparison
with published numbers. It needs torch-fidelity and the Inception weights, both given by the
user: nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance

from bench.data import load_mnist, to_model_range
from bench.errors import UsageError
from bench.metrics.classifier import IMAGE_SIZE

INCEPTION_HELP = (
    "the Inception FID needs torch-fidelity (pip install \"gan-bench[inception]\") and the Inception-v3 weights "
    "(pt_inception-2015-12-05, as weights-inception-2015-12-05-6726825d.pth from the torch-fidelity v0.2.0 "
    "GitHub release) passed as --inception-weights PATH; nothing is downloaded automatically"
)


def _inception_input(images: Tensor) -> Tensor:
    """Turn one-channel images in [-1, 1] into three-channel floats in [0, 1] (torchmetrics resizes)."""
    return images.float().add(1).div_(2).clamp_(0, 1).expand(-1, 3, -1, -1)


class InceptionFID:
    """torchmetrics' classic FID (Inception-v3 pool features, 2048) against the MNIST test split.

    The real side is computed at the first :meth:`compute` and kept for the later ones.

    Raises:
        UsageError: no weights path, torch-fidelity is not installed, or the file is missing.
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None,
        device: torch.device | str = "cpu",
        data_dir: str | None = None,
        batch_size: int = 100,
    ):
        if weights_path is None:
            raise UsageError(f"no Inception weights given: {INCEPTION_HELP}")
        if importlib.util.find_spec("torch_fidelity") is None:
            raise UsageError(f"torch-fidelity is not installed: {INCEPTION_HELP}")
        path = Path(weights_path)
        if not path.is_file():
            raise UsageError(f"Inception weights {path} not found: {INCEPTION_HELP}")
        self.metric = FrechetInceptionDistance(
            feature=2048, normalize=True, reset_real_features=False, feature_extractor_weights_path=str(path)
        ).to(device)
        self.device = torch.device(device)
        self.data_dir = data_dir
        self.batch_size = batch_size
        self._has_real = False

    def _update(self, images: Tensor, real: bool) -> None:
        for i in range(0, len(images), self.batch_size):
            self.metric.update(_inception_input(images[i : i + self.batch_size]).to(self.device), real=real)

    @torch.no_grad()
    def compute(self, images: Tensor) -> float:
        """Return the FID of images in [-1, 1], (N, 1, S, S), against the MNIST test split."""
        if not self._has_real:
            test, _ = load_mnist("test", self.data_dir)
            self._update(to_model_range(test, IMAGE_SIZE), real=True)
            self._has_real = True
        self.metric.reset()
        self._update(images, real=False)
        return float(self.metric.compute())
