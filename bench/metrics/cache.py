"""What the evaluation computes once and keeps: in memory for the process, on disk across processes.

A cached value is keyed by the SHA-256 of everything it depends on (its kind, the protocol
version, the classifier's weights, the data files, ...), so a stale entry is never read: a
change makes a new key. :func:`cached` looks a key up in memory, then on disk, and otherwise
computes the value and stores it in both; a file that is missing, damaged or made for another
key is recomputed, and a cache folder that cannot be written is only a warning.

The real side of the metrics, :func:`real_stats` (classifier features of the 10,000 MNIST test
images and their k-NN radii), is cached here; so are the reference points (see
:mod:`bench.metrics.references`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from torch import Tensor

from bench.data import FILES, load_mnist, to_model_range
from bench.metrics.classifier import (
    IMAGE_SIZE, WEIGHTS_SHA256, MNISTClassifier, load_classifier, predict, to_classifier_size,
)
from bench.scores import PR_K, knn_radii
from bench.errors import UsageError
from bench.storage import load_torch, save_torch

#: Bump when the real-side statistics or the reference points change meaning.
PROTOCOL_VERSION = 1

T = TypeVar("T")

#: In-memory caches, keyed like the files on disk.
_MEMORY: dict[str, object] = {}


def cache_dir() -> Path:
    """Return the folder of on-disk caches: ``$GAN_BENCH_CACHE`` or ``~/.cache/gan-bench``."""
    env = os.environ.get("GAN_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gan-bench"


def clear_memory_cache() -> None:
    """Forget the in-memory real statistics and reference points (the disk cache stays)."""
    _MEMORY.clear()


def cache_key(kind: str, **parts: object) -> str:
    """Return the SHA-256 of everything a cached value of ``kind`` depends on."""
    described = {"kind": kind, "version": PROTOCOL_VERSION, "classifier_sha256": WEIGHTS_SHA256, **parts}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def data_digests(*names: str) -> dict[str, str]:
    """Return the SHA-256 of the named MNIST files (``load_mnist`` verifies every file against them)."""
    return {name: FILES[name][0] for name in names}


def cached(
    kind: str,
    key: str,
    compute: Callable[[], T],
    encode: Callable[[T], dict[str, Any]],
    decode: Callable[[dict[str, Any]], T],
) -> T:
    """Return the value for ``key``: from memory, else from disk, else computed and stored in both.

    Args:
        kind: names the file on disk (``<kind>-<key prefix>.pt``).
        encode: turns the value into the dict of tensors and plain data written to disk.
        decode: turns that dict back into the value; it raises ``KeyError``, ``TypeError``,
            ``ValueError`` or ``AttributeError`` for a dict it cannot use, which is recomputed.
    """
    if key in _MEMORY:
        return cast(T, _MEMORY[key])  # stored under this key by this function
    path = cache_dir() / f"{kind}-{key[:24]}.pt"
    value = _decoded(_load(path, key), decode)
    if value is None:
        value = compute()
        _save(path, key, encode(value))
    _MEMORY[key] = value
    return value


def _decoded(stored: dict[str, Any] | None, decode: Callable[[dict[str, Any]], T]) -> T | None:
    if stored is None:
        return None
    try:
        return decode(stored)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _load(path: Path, key: str) -> dict[str, Any] | None:
    """Return the dict stored at ``path`` if it is intact and made for ``key``, else None."""
    try:
        blob = load_torch(path)
    except Exception:  # missing, truncated, corrupt or foreign (a UsageError): recompute it
        return None
    if not isinstance(blob, dict) or blob.get("key") != key or not isinstance(blob.get("value"), dict):
        return None
    return blob["value"]


def _save(path: Path, key: str, value: dict[str, Any]) -> None:
    """Write ``value`` to ``path`` atomically; a cache that cannot be written is only a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch(path, {"key": key, "value": value})
    except (OSError, UsageError) as exc:  # UsageError: a link in the cache's place, which is never followed
        warnings.warn(f"cannot write the metrics cache {path} ({exc}); it will be recomputed next time", stacklevel=4)


# --- the real side -------------------------------------------------------------------------------


@dataclass
class RealStats:
    """Classifier features of the real images, and their k-NN radii (precision/recall)."""

    features: Tensor  # (N, F) float32
    radii: Tensor  # (N,) float32, distance to the PR_K-th nearest real neighbour

    def to_dict(self) -> dict[str, Tensor]:
        """Return the fields as a dict of tensors (what the disk cache stores)."""
        return {"features": self.features, "radii": self.radii}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> RealStats:
        """Rebuild the statistics from :meth:`to_dict`'s output; ``ValueError`` if the shapes disagree."""
        stats = cls(value["features"], value["radii"])
        n, _ = stats.features.shape
        if stats.radii.shape != (n,):
            raise ValueError(f"{n} real features but {tuple(stats.radii.shape)} radii")
        return stats


def compute_real_stats(model: MNISTClassifier, data_dir: str | None = None, k: int = PR_K,
                       image_size: int = IMAGE_SIZE) -> RealStats:
    """Compute the real-side statistics of the MNIST test split from scratch with ``model``, the images
    brought to ``image_size`` as training data is, then to the classifier's size as generated images are."""
    images, _ = load_mnist("test", data_dir)
    features, _ = predict(model, to_classifier_size(to_model_range(images, image_size)))
    features = features.float().cpu()
    return RealStats(features, knn_radii(features, k))


def real_stats(data_dir: str | None = None, k: int = PR_K, image_size: int = IMAGE_SIZE) -> RealStats:
    """Return the real-side statistics of the MNIST test split at ``image_size``, computed once and cached."""
    sized = {} if image_size == IMAGE_SIZE else {"image_size": image_size}  # the 28x28 key as it always was
    key = cache_key("real", data=data_digests("t10k-images-idx3-ubyte"), k=k, **sized)
    # Computed on the CPU whatever the evaluation device, so that the real side is the same
    # bits on every machine.
    return cached("real-stats", key, lambda: compute_real_stats(load_classifier("cpu"), data_dir, k, image_size),
                  RealStats.to_dict, RealStats.from_dict)
