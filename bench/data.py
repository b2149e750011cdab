"""MNIST, read from the IDX files shipped in the package, checked and held as one tensor.

No DataLoader and no per-item transforms: the images are decoded once, resized once to the
architecture's size, scaled to [-1, 1] and moved to the device once. Batches are slices of
a seeded permutation per epoch.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import DataError, UsageError

PACKAGED_DIR = Path(__file__).with_name("mnist")

#: SHA-256 of the *uncompressed* content of each file, and its size in bytes.
FILES = {
    "train-images-idx3-ubyte": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
    "train-labels-idx1-ubyte": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
    "t10k-images-idx3-ubyte": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
    "t10k-labels-idx1-ubyte": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
}
SPLITS = {"train": "train", "test": "t10k"}
#: The seed of the shuffle whose first N images make up ``--train-subset N``. Fixed, so
#: every architecture and every training seed sees the same subset.
SUBSET_SEED = 0


def read_verified(data_dir: Path, name: str) -> bytes:
    """Return the uncompressed bytes of ``name`` (``.gz`` or plain) after checking them."""
    digest, size = FILES[name]
    fix = "restore it from a clean copy of MNIST, or drop --data-dir to use the copy shipped with gan-bench"
    candidates = [data_dir / f"{name}.gz", data_dir / name, data_dir / "MNIST" / "raw" / f"{name}.gz"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"MNIST file {name}(.gz) not found in {data_dir}; {fix}")
    try:
        raw = _read_at_most(path, size + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"MNIST file {path} cannot be read ({exc}); {fix}") from None
    if len(raw) > size:
        raise DataError(f"MNIST file {path} is altered or truncated: more than {size} bytes uncompressed, "
                        f"expected {size} bytes with SHA-256 {digest}; {fix}")
    actual = hashlib.sha256(raw).hexdigest()
    if actual != digest:
        raise DataError(
            f"MNIST file {path} is altered or truncated: {len(raw)} bytes with SHA-256 {actual[:12]}..., "
            f"expected {size} bytes with SHA-256 {digest}; {fix}"
        )
    return raw


def _read_at_most(path: Path, limit: int) -> bytes:
    """Return at most ``limit`` bytes of ``path``, decompressed as read for ``.gz`` (a gzip bomb is cut off)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        return fh.read(limit)


def _parse_idx(raw: bytes) -> Tensor:
    """Decode an IDX file of unsigned bytes into a uint8 tensor of its declared shape."""
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8)
    return data.reshape(shape)


@lru_cache(maxsize=4)
def load_mnist(split: str = "train", data_dir: str | None = None) -> tuple[Tensor, Tensor]:
    """Return ``(images, labels)`` of one split: uint8 (N, 28, 28) and int64 (N,).

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        data_dir: a folder holding the four IDX files (``.gz`` or not); the packaged copy if None.

    Raises:
        DataError: a file is missing, truncated or altered (names the file and the checksum).
    """
    if split not in SPLITS:
        raise UsageError(f"unknown MNIST split {split!r}; choose from: {', '.join(SPLITS)}")
    folder = Path(data_dir) if data_dir is not None else PACKAGED_DIR
    if not folder.is_dir():
        raise DataError(f"--data-dir {folder} is not a folder")
    prefix = SPLITS[split]
    images = _parse_idx(read_verified(folder, f"{prefix}-images-idx3-ubyte"))
    labels = _parse_idx(read_verified(folder, f"{prefix}-labels-idx1-ubyte")).long()
    return images, labels


def to_model_range(images: Tensor, image_size: int) -> Tensor:
    """Turn uint8 (N, 28, 28) digits into float (N, 1, S, S) in [-1, 1].

    A 28x28 digit is resized bilinearly and rounded back to 8 bits, as the study's
    ``transforms.Resize`` on PIL images did, then scaled like ``Normalize([0.5], [0.5])``.
    """
    return _resized_pixels(images.unsqueeze(1).float(), image_size).div_(127.5).sub_(1.0)


def to_scale(images: Tensor, side: int) -> Tensor:
    """Bring images in [-1, 1], (N, 1, S, S), to ``side`` exactly as :func:`to_model_range` brings training digits
    there: as 8-bit pixels, resized bilinearly and rounded back to 8 bits. An evaluation scale treats real and
    generated images alike."""
    if images.shape[-1] == side:
        return images
    pixels = images.float().add(1.0).mul_(127.5).round_().clamp_(0, 255)
    return _resized_pixels(pixels, side).div_(127.5).sub_(1.0)


def _resized_pixels(x: Tensor, side: int) -> Tensor:
    """Pixel values in [0, 255] resized to ``side`` (bilinear) and rounded back to 8 bits; unchanged at their side."""
    if side != x.shape[-1]:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        x = x.round().clamp_(0, 255)
    return x


@dataclass
class SamplerState:
    """Where a :class:`BatchSampler` is: the epoch and the next batch within it."""

    epoch: int = 0
    batch: int = 0


class BatchSampler:
    """Yield batches from a tensor already on the device, in a seeded order per epoch.

    Epoch ``e`` uses the permutation of a CPU generator seeded with ``seed + e``, so any
    position can be recreated (resume) without replaying earlier epochs. The last batch of
    an epoch is partial, as with the study's DataLoader.
    """

    def __init__(self, data: Tensor, batch_size: int, seed: int):
        if batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
        if batch_size > len(data):
            raise UsageError(f"--batch-size {batch_size} is larger than the training set ({len(data)} images)")
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.state = SamplerState()
        self._perm: Tensor | None = None
        self._perm_epoch = -1

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def _permutation(self, epoch: int) -> Tensor:
        if self._perm_epoch != epoch:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            self._perm = torch.randperm(len(self.data), generator=gen).to(self.data.device)
            self._perm_epoch = epoch
        return self._perm

    def next(self) -> Tensor:
        """Return the next batch and advance, rolling over to the next epoch at its end."""
        perm = self._permutation(self.state.epoch)
        start = self.state.batch * self.batch_size
        batch = self.data.index_select(0, perm[start : start + self.batch_size])
        self.state.batch += 1
        if self.state.batch == self.batches_per_epoch:
            self.state = SamplerState(self.state.epoch + 1, 0)
        return batch


def training_images(
    image_size: int,
    device: torch.device,
    data_dir: str | None = None,
    subset: int | None = None,
) -> Tensor:
    """Return the MNIST training split ready for training: float (N, 1, S, S) on ``device``.

    ``subset`` keeps the first N images of a fixed seeded shuffle (the study's
    reduced-data experiment).
    """
    images, _ = load_mnist("train", data_dir)
    if subset is not None:
        if not 1 <= subset <= len(images):
            raise UsageError(f"--train-subset must be between 1 and {len(images)}, got {subset}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SUBSET_SEED))
        images = images[order[:subset]]
    return to_model_range(images, image_size).to(device)
