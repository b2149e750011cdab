"""Anyone's images, read and checked for scoring: ``.npy``, ``.npz``, ``.pt`` or a folder of PNGs.

``bench score`` hands what :func:`load_images` returns to the evaluator, so images made
anywhere get the suite's metrics in its MNIST feature space. Everything that can be wrong
with the input (kind of file, shape, count, non-finite values, value range) is refused here
with one line, before the classifier is loaded.

The value range is read from the values unless ``value_range`` is given:

- any value below 0: [-1, 1] (a tanh generator's output);
- else any value above 1: [0, 255] (8-bit pixels, integers or floats);
- else [0, 1].

Values within :data:`TOLERANCE` outside the chosen range are clamped (rounding in a
generator's last layer); anything further out is refused. PNG pixels are 8-bit, [0, 255].
"""

from __future__ import annotations

import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from bench.errors import UsageError

#: Image sides accepted: MNIST's 28, and the 32 of the 32x32 architectures (resized by the evaluator).
SIZES = (28, 32)
#: FID is biased upward at small counts, and below this the bias swamps differences between
#: models: the train-vs-test reference is FID 2.5 at 10,000 images, 4.9 at 2,000 and 7.6 at 1,000.
MIN_IMAGES = 1000
#: The published protocol scores 10,000; fewer are compared only with reference points at the same count.
RECOMMENDED_IMAGES = 10_000
#: The train-vs-test reference point draws as many MNIST training images as it is given images.
MAX_IMAGES = 60_000
#: How far outside its range a value may lie and still be clamped in (rounding, not a wrong range).
TOLERANCE = 1e-3
#: ``--range`` names and their bounds.
RANGES: dict[str, tuple[float, float]] = {"0,1": (0.0, 1.0), "0,255": (0.0, 255.0), "-1,1": (-1.0, 1.0)}
RULE = "any value below 0: [-1, 1]; else any above 1: [0, 255]; else [0, 1]"
ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".pth")
EXPECTED_SHAPES = "N x S x S, N x 1 x S x S or N x S x S x 1 with S = 28 or 32"


@dataclass(frozen=True, kw_only=True)
class ImageSource:
    """What was read: the file, how many images of which shape, and how their values were read."""

    path: str
    format: str
    key: str | None = None
    count: int
    shape: list[int]
    dtype: str
    image_size: int
    value_min: float
    value_max: float
    value_range: str
    range_from: str

    def describe(self) -> str:
        """Describe the input in one line, for the terminal."""
        source = f"{self.format}, key {self.key!r}" if self.key else self.format
        size = f"{self.image_size}x{self.image_size}" + (", resized to 28x28" if self.image_size != 28 else "")
        return (f"{self.path} ({source}): {self.count:,} images of {size}, {self.dtype}, values "
                f"{self.value_min:g} to {self.value_max:g}, read as [{self.value_range}] ({self.range_from})")


class _Read(NamedTuple):
    """What a reader found: the values, the kind of file, the ``.npz`` key and the values' type as stored."""

    values: Tensor
    format: str
    key: str | None
    dtype: str


@dataclass(frozen=True)
class LoadedImages:
    """Images ready for the evaluator, float32 (N, 1, S, S) in [-1, 1], and where they came from."""

    images: Tensor
    source: ImageSource


def load_images(path: str | os.PathLike, key: str | None = None, value_range: str | None = None) -> LoadedImages:
    """Read and check the images at ``path``; map them to [-1, 1].

    Args:
        key: the array of an ``.npz`` file holding several.
        value_range: ``"0,1"``, ``"0,255"`` or ``"-1,1"``; None to detect it.

    Raises:
        UsageError: one line saying what is wrong with the input and what is accepted.
    """
    p = Path(path)
    if value_range is not None and value_range not in RANGES:
        raise UsageError(f"unknown --range {value_range!r}; choose from: {', '.join(RANGES)} (write --range=-1,1)")
    if key is not None and p.suffix.lower() != ".npz":
        raise UsageError(f"--key picks an array of an .npz file; {p} is not one")
    if p.is_dir():
        read, fixed = _read_png_folder(p), "0,255"
    elif not p.exists():
        raise UsageError(f"{p}: no such file or folder")
    else:
        read, fixed = _read_array_file(p, key), None
    images = _check_shape(p, read.values)
    _check_count(p, len(images))
    lo, hi = _finite_bounds(p, images)
    name, reason = _choose_range(p, lo, hi, value_range, fixed)
    source = ImageSource(path=str(p), format=read.format, key=read.key, count=len(images),
                         shape=list(read.values.shape), dtype=read.dtype, image_size=images.shape[-1],
                         value_min=lo, value_max=hi, value_range=name.replace(",", ", "), range_from=reason)
    return LoadedImages(_to_model_range(images, name), source)


# Reading -----------------------------------------------------------------------------------------


def _read_array_file(path: Path, key: str | None) -> _Read:
    """Read the array of a ``.npy``, ``.npz`` or ``.pt`` file."""
    suffix = path.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise UsageError(f"{path}: unknown kind of file {path.suffix or '(no extension)'!r}; give a .npy, .npz or "
                         f".pt array of images, or a folder of PNG files")
    if suffix in (".pt", ".pth"):
        tensor = _read_pt(path)
        return _Read(_widened(tensor), "torch tensor", None, str(tensor.dtype).removeprefix("torch."))
    try:
        _check_numpy_magic(path, suffix)
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            return _Read(_numbers(path, array), "numpy array", None, str(array.dtype))
        with np.load(path, allow_pickle=False) as archive:
            key = _npz_key(path, archive, key)
            array = archive[key]
            return _Read(_numbers(path, array), "numpy .npz archive", key, str(array.dtype))
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # numpy's refusal of an object array
            raise UsageError(f"{path}: not an array of images, and may be unsafe (it holds pickled Python objects)"
                             ) from None
        raise UsageError(f"{path}: cannot be read as {suffix} ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: cannot be read as {suffix} ({getattr(exc, 'strerror', None) or exc})") from None


def _check_numpy_magic(path: Path, suffix: str) -> None:
    """Refuse a file that does not start as NumPy's files do (np.load would take it for a pickle)."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if (suffix == ".npy" and head != b"\x93NUMPY") or (suffix == ".npz" and head[:2] != b"PK"):
        raise UsageError(f"{path}: cannot be read as {suffix} (not a NumPy {suffix} file)")


def _read_pt(path: Path) -> Tensor:
    """Load one tensor with ``weights_only=True``; refuse anything else."""
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file makes torch.load raise almost anything
        if "Unsupported global" in str(exc):  # a pickled object: weights_only refused to build it
            raise UsageError(f"{path}: not an array of images, and may be unsafe (torch.load with "
                             f"weights_only=True refused it)") from None
        # torch wraps its unpickler's reason in a page of advice; keep the reason.
        reason = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
        detail = reason.group(1).strip() if reason else (str(exc).splitlines() or [""])[0]
        raise UsageError(f"{path}: cannot be read as .pt ({type(exc).__name__}: {detail})") from None
    if not isinstance(value, Tensor):
        raise UsageError(f"{path}: not an array of images, and may be unsafe (it holds an object of type "
                         f"{type(value).__name__}, not one tensor)")
    if value.is_complex() or value.is_quantized or value.is_sparse:
        raise UsageError(f"{path}: holds a {value.dtype} tensor; expected real numbers")
    return value.detach()


def _widened(tensor: Tensor) -> Tensor:
    """Return booleans and wide unsigned integers as int64, which min and max take."""
    if tensor.dtype in (torch.bool, torch.uint16, torch.uint32, torch.uint64):
        return tensor.to(torch.int64)
    return tensor


def _npz_key(path: Path, archive: Any, key: str | None) -> str:
    """Return the ``.npz`` array to score: ``key``, the only array, or the only one with 3 or 4 dimensions."""
    keys = list(archive.files)
    if key is not None:
        if key not in keys:
            raise UsageError(f"{path}: no array {key!r}; it holds: {', '.join(keys) or 'nothing'}")
        return key
    if len(keys) == 1:
        return keys[0]
    candidates = [k for k in keys if archive[k].ndim in (3, 4)]
    if len(candidates) == 1:
        return candidates[0]
    held = ", ".join(f"{k} {'x'.join(map(str, archive[k].shape))}" for k in keys) or "nothing"
    what = "several arrays of images" if candidates else "no array of images"
    raise UsageError(f"{path}: holds {what} ({held}); choose one with --key NAME")


def _numbers(path: Path, array: np.ndarray) -> Tensor:
    """Return a numpy array of numbers as a tensor (booleans and wide unsigned integers widened)."""
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{path}: holds {array.dtype} values; expected numbers")
    if array.dtype.kind == "b" or (array.dtype.kind == "u" and array.dtype.itemsize > 1):
        array = array.astype(np.int64)
    elif array.dtype.kind == "f" and array.dtype.itemsize > 8:
        array = array.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(array))


def _read_png_folder(folder: Path) -> _Read:
    """Read the PNG files of ``folder`` (sorted by name, not searched below) as gray uint8 (N, H, W)."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".png" and f.is_file())
    if not files:
        raise UsageError(f"{folder}: no PNG files in the folder (sub-folders are not searched)")
    _check_count(folder, len(files), "PNG files")
    pixels, sizes = [], Counter()
    for f in files:
        try:
            with Image.open(f) as img:
                if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
                    raise UsageError(f"{f}: PNG mode {img.mode}; save 8-bit grayscale or RGB images")
                gray = np.asarray(img.convert("L"))  # RGB: ITU-R 601-2 luma
        except (OSError, UnidentifiedImageError) as exc:
            raise UsageError(f"{f}: cannot be read as a PNG ({exc})") from None
        sizes[gray.shape] += 1
        pixels.append(gray)
    if len(sizes) > 1:
        counts = ", ".join(f"{w}x{h}: {n}" for (h, w), n in sorted(sizes.items()))
        raise UsageError(f"{folder}: PNG files of different sizes ({counts}); all must be one size")
    return _Read(torch.from_numpy(np.stack(pixels)), "folder of PNG files", None, "uint8")


# Checking ----------------------------------------------------------------------------------------


def _check_shape(path: Path, values: Tensor) -> Tensor:
    """Return the images as (N, 1, S, S), or refuse a shape that is not one of :data:`EXPECTED_SHAPES`."""
    shape = tuple(values.shape)
    x = None
    if values.dim() == 3:
        x = values.unsqueeze(1)
    elif values.dim() == 4 and shape[1] == 1:
        x = values
    elif values.dim() == 4 and shape[3] == 1:
        x = values.permute(0, 3, 1, 2)
    if x is None or x.shape[-1] != x.shape[-2] or x.shape[-1] not in SIZES:
        got = " x ".join(map(str, shape)) or "a scalar"
        raise UsageError(f"{path}: images of shape {got}; expected {EXPECTED_SHAPES}")
    return x


def _check_count(path: Path, n: int, what: str = "images") -> None:
    """Refuse fewer images than the metrics need, or more than the reference points can match."""
    if n < MIN_IMAGES:
        raise UsageError(f"{path}: {n:,} {what}; the metrics need at least {MIN_IMAGES:,} "
                         f"(FID's small-sample bias grows as they get fewer; {RECOMMENDED_IMAGES:,} is the protocol)")
    if n > MAX_IMAGES:
        raise UsageError(f"{path}: {n:,} {what}; at most {MAX_IMAGES:,} (the train-vs-test reference point "
                         f"draws as many of the 60,000 MNIST training images); score a part of them")


def _finite_bounds(path: Path, images: Tensor) -> tuple[float, float]:
    """Return the smallest and largest value; refuse NaN or infinite values, saying where the first is."""
    if images.is_floating_point():
        bad = ~torch.isfinite(images)
        if bad.any():
            first = int(bad.flatten(1).any(1).nonzero()[0])
            count = int(bad.sum())
            raise UsageError(f"{path}: {count:,} value{'s are' if count > 1 else ' is'} NaN or infinite "
                             f"(the first in image {first}); images must be finite")
    lo, hi = torch.aminmax(images.flatten())
    return float(lo), float(hi)


def detect_range(lo: float, hi: float) -> tuple[str, str]:
    """Return the range the values ``lo`` to ``hi`` are read in by :data:`RULE`, and why."""
    if lo < -TOLERANCE:
        return "-1,1", f"detected: a value below 0 ({lo:g}); rule: {RULE}"
    if hi > 1 + TOLERANCE:
        return "0,255", f"detected: a value above 1 ({hi:g}); rule: {RULE}"
    return "0,1", f"detected: every value within [0, 1]; rule: {RULE}"


def _choose_range(path: Path, lo: float, hi: float, given: str | None, fixed: str | None) -> tuple[str, str]:
    """Return the range to read the values in (given, fixed by the format, or detected); refuse values outside it."""
    if given is not None:
        name, reason = given, "given by --range"
    elif fixed is not None:
        name, reason = fixed, "8-bit PNG pixels"
    else:
        name, reason = detect_range(lo, hi)
    low, high = RANGES[name]
    if lo < low - TOLERANCE * (high - low) or hi > high + TOLERANCE * (high - low):
        found = f"{path}: values from {lo:g} to {hi:g}"
        if given is not None:
            raise UsageError(f"{found} lie outside the --range [{name.replace(',', ', ')}] given; rescale them, "
                             f"or leave out --range to detect it")
        raise UsageError(f"{found} fit none of the accepted ranges [0, 1], [0, 255] (integers or floats) or "
                         f"[-1, 1]; rescale them")
    return name, reason


def _to_model_range(images: Tensor, name: str) -> Tensor:
    """Map float32 images in the range ``name`` to [-1, 1], as the models' outputs are."""
    low, high = RANGES[name]
    # Divide by the half-width (127.5, 0.5 or 1), exactly as bench.data.to_model_range scales MNIST.
    x = images.to(torch.float32)
    x = x.sub(low).div_((high - low) / 2).sub_(1.0)
    return x.clamp_(-1.0, 1.0).contiguous()
