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

import math
import os
import re
import warnings
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
            with open(path, "rb") as fh:
                _check_images_header(path, *_check_npy_header(path, fh, os.fstat(fh.fileno()).st_size))
            array = np.load(path, allow_pickle=False)
            return _Read(_numbers(path, array), "numpy array", None, str(array.dtype))
        headers = _npz_headers(path)
        key = _npz_key(path, headers, key)
        _check_images_header(f"{path} (array {key!r})", *headers[key])
        with np.load(path, allow_pickle=False) as archive:
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


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_npy_header(where: str | Path, fh: Any, size: int) -> tuple[tuple[int, ...], np.dtype]:
    """Read an array's ``.npy`` header from ``fh`` and check, before anything is allocated, that the values it
    declares fill exactly the ``size`` bytes the file holds.

    Returns:
        the array's shape and type.

    Raises:
        UsageError: the header is unreadable, declares Python objects, or lies about the data.
    """
    version = np.lib.format.read_magic(fh)
    if version not in _HEADER_READERS:
        raise UsageError(f"{where}: .npy format version {version[0]}.{version[1]}; save it with numpy.save")
    shape, _, dtype = _HEADER_READERS[version](fh)
    if dtype.hasobject:
        raise UsageError(f"{where}: not an array of images, and may be unsafe (it holds pickled Python objects)")
    declared = math.prod(shape) * dtype.itemsize
    held = size - fh.tell()
    if declared != held:
        raise UsageError(f"{where}: its header declares {' x '.join(map(str, shape)) or 'a scalar'} {dtype} values "
                         f"({declared:,} bytes), but the file holds {held:,} bytes of data; the file is damaged")
    return shape, dtype


def _check_images_header(where: str | Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse, from its header alone, an array that holds no images the metrics take (nothing is allocated)."""
    if dtype.kind in "biuf":  # other kinds are refused by what they hold, once read
        _check_shape(where, torch.empty(shape, device="meta"))
        _check_count(where, shape[0])


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every array's shape and type in an ``.npz`` archive, from the headers alone (each checked as in a ``.npy``)."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename.removesuffix(".npy")
            with archive.open(info) as member:
                try:
                    headers[name] = _check_npy_header(f"{path} (array {name!r})", member, info.file_size)
                except UsageError as exc:
                    headers[name] = exc  # refused only if it is the one to score
    return headers


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


def _npz_key(path: Path, headers: dict[str, Any], key: str | None) -> str:
    """Return the ``.npz`` array to score: ``key``, the only array, or the only one with 3 or 4 dimensions.

    ``headers`` maps each array to its (shape, dtype), or to the :class:`UsageError` its header earned,
    raised here if that array is the one to score.
    """
    keys = list(headers)
    if key is not None:
        if key not in keys:
            raise UsageError(f"{path}: no array {key!r}; it holds: {', '.join(keys) or 'nothing'}")
    elif len(keys) == 1:
        key = keys[0]
    else:
        shapes = {k: h[0] if isinstance(h, tuple) else None for k, h in headers.items()}
        candidates = [k for k in keys if shapes[k] is not None and len(shapes[k]) in (3, 4)]
        if len(candidates) != 1:
            held = ", ".join(f"{k} {'x'.join(map(str, shapes[k] or ('damaged',)))}" for k in keys) or "nothing"
            what = "several arrays of images" if candidates else "no array of images"
            raise UsageError(f"{path}: holds {what} ({held}); choose one with --key NAME")
        key = candidates[0]
    if isinstance(headers[key], UsageError):
        raise headers[key]
    return key


def _numbers(path: Path, array: np.ndarray) -> Tensor:
    """Return a numpy array of numbers as a tensor (booleans and wide unsigned integers widened)."""
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{path}: holds {array.dtype} values; expected numbers")
    if array.dtype.kind == "b" or (array.dtype.kind == "u" and array.dtype.itemsize > 1):
        array = array.astype(np.int64)
    elif array.dtype.kind == "f" and array.dtype.itemsize > 8:
        array = array.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(array))


#: PNG's signature, and the IHDR chunk that must follow it: length 13, then width and height.
_PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def _png_size(path: Path) -> tuple[int, int]:
    """A PNG's (height, width) from its header alone, before Pillow decodes anything."""
    with open(path, "rb") as fh:
        head = fh.read(len(_PNG_START) + 8)
    if len(head) < len(_PNG_START) + 8 or not head.startswith(_PNG_START):
        raise UsageError(f"{path}: cannot be read as a PNG (no PNG header)")
    width, height = int.from_bytes(head[-8:-4], "big"), int.from_bytes(head[-4:], "big")
    return height, width


def _read_png_folder(folder: Path) -> _Read:
    """Read the PNG files of ``folder`` (sorted by name, not searched below) as gray uint8 (N, H, W).

    Every file's size is read from its header and checked first, so nothing larger than the
    accepted images is ever decoded, and nothing is kept until all sizes agree.
    """
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".png" and f.is_file())
    if not files:
        raise UsageError(f"{folder}: no PNG files in the folder (sub-folders are not searched)")
    _check_count(folder, len(files), "PNG files")
    sizes = Counter(_png_size(f) for f in files)
    if len(sizes) > 1:
        counts = ", ".join(f"{w}x{h}: {n}" for (h, w), n in sorted(sizes.items()))
        raise UsageError(f"{folder}: PNG files of different sizes ({counts}); all must be one size")
    (height, width), = sizes
    if height != width or height not in SIZES:
        expected = " or ".join(f"{side}x{side}" for side in SIZES)
        raise UsageError(f"{folder}: PNG files of {width}x{height} pixels; expected {expected}")
    pixels = np.empty((len(files), height, width), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # Pillow's warnings (a size it doubts) end in the one line below
                with Image.open(f) as img:
                    if img.size != (width, height):
                        raise UsageError(f"{f}: changed while it was read ({img.size[0]}x{img.size[1]} pixels)")
                    if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
                        raise UsageError(f"{f}: PNG mode {img.mode}; save 8-bit grayscale or RGB images")
                    pixels[i] = np.asarray(img.convert("L"))  # RGB: ITU-R 601-2 luma
        except (OSError, UnidentifiedImageError, Warning, Image.DecompressionBombError) as exc:
            raise UsageError(f"{f}: cannot be read as a PNG ({exc})") from None
    return _Read(torch.from_numpy(pixels), "folder of PNG files", None, "uint8")


# Checking ----------------------------------------------------------------------------------------


def _check_shape(path: str | Path, values: Tensor) -> Tensor:
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


def _check_count(path: str | Path, n: int, what: str = "images") -> None:
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
