"""Reference points: what real training images and uniform noise score against the test split.

They frame a run's numbers: a generator cannot be expected to beat ``train_vs_test`` (other
real digits) and should beat ``noise_vs_test`` by far. Both are scored by the evaluator with
the run's protocol and cached like the real side (:func:`bench.metrics.cache.cached`).
"""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics
from torch import Tensor

from bench.data import SUBSET_SEED, load_mnist, to_model_range
from bench.errors import UsageError
from bench.metrics.cache import cache_key, data_digests
from bench.metrics.classifier import IMAGE_SIZE
from bench.record import Metrics
from bench.schema import to_plain
from bench.scores import METRICS

NAMES = ("train_vs_test", "noise_vs_test")


def reference_key(protocol: dict[str, object]) -> str:
    """Return the cache key of the reference points scored under ``protocol`` (an evaluator's)."""
    # The backbone only adds fid_inception, which reference points leave out; the torchmetrics
    # version is a part of the key of its own. The metric set is too: points scored before a
    # metric was added would show "-" for it.
    return cache_key(
        "reference",
        data=data_digests("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
        protocol={k: v for k, v in protocol.items() if k not in ("fid_backbone", "torchmetrics")},
        subset_seed=SUBSET_SEED,
        torchmetrics=torchmetrics.__version__,
        metrics=[m.name for m in METRICS],
    )


def reference_images(n: int, seed: int, data_dir: str | None = None,
                     image_size: int = IMAGE_SIZE) -> dict[str, Tensor]:
    """Return the images of each reference point, in [-1, 1], (n, 1, image_size, image_size).

    ``train_vs_test`` is the first ``n`` training images of the shuffle that ``--train-subset``
    uses, brought to ``image_size`` as training data is; ``noise_vs_test`` is ``n`` images of
    uniform noise at that size drawn from ``seed``.
    """
    train, _ = load_mnist("train", data_dir)
    if n > len(train):
        raise UsageError(f"reference points need at most {len(train)} samples, got {n}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SUBSET_SEED))
    noise = torch.rand(n, 1, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    return {"train_vs_test": to_model_range(train[order[:n]], image_size), "noise_vs_test": noise.mul_(2).sub_(1)}


def encode(points: dict[str, Metrics]) -> dict[str, Any]:
    """Return the reference points as plain data, as the disk cache stores them."""
    return {name: to_plain(points[name]) for name in NAMES}


def decode(value: dict[str, Any]) -> dict[str, Metrics]:
    """Rebuild the reference points from :func:`encode`'s output; ``ValueError`` if it is not that."""
    if set(value) != set(NAMES):
        raise ValueError(f"reference points {sorted(value)}, expected {list(NAMES)}")
    return {name: Metrics(**value[name]) for name in NAMES}
