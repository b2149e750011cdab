"""Images made anywhere, read for ``bench score``: kinds of file, shapes, counts, value ranges, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import load_mnist, to_model_range
from bench.errors import UsageError
from bench.metrics import images as image_files
from bench.metrics.images import RULE, detect_range, load_images

from helpers import npy_claiming, png_header

N = 8  # the tests lower the minimum count to this, to stay small


@pytest.fixture(autouse=True)
def few_images(monkeypatch):
    monkeypatch.setattr(image_files, "MIN_IMAGES", N)
    monkeypatch.setattr(image_files, "MAX_IMAGES", 100)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """``N`` MNIST test digits, uint8 (N, 28, 28)."""
    return load_mnist("test")[0][:N].numpy()


def save_npy(tmp_path, array, name="images.npy"):
    path = tmp_path / name
    np.save(path, array)
    return path


def test_uint8_digits_map_exactly_as_the_training_data_does(digits, tmp_path):
    loaded = load_images(save_npy(tmp_path, digits))
    assert torch.equal(loaded.images, to_model_range(torch.from_numpy(digits), 28))
    s = loaded.source
    assert (s.count, s.shape, s.dtype, s.image_size, s.value_range) == (N, [N, 28, 28], "uint8", 28, "0, 255")
    assert (s.value_min, s.value_max) == (float(digits.min()), float(digits.max()))
    assert s.range_from.startswith("detected: a value above 1") and RULE in s.range_from
    assert "read as [0, 255]" in s.describe() and f"{N:,} images of 28x28" in s.describe()


@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (-1.0, 1.0, "-1,1"), (-0.5, 0.2, "-1,1"),   # any value below 0
    (0.0, 255.0, "0,255"), (0.0, 1.5, "0,255"),  # else any above 1
    (0.0, 1.0, "0,1"), (0.2, 0.8, "0,1"),        # else [0, 1], also for values that would fit [-1, 1]
    (-0.0005, 1.0005, "0,1"),                    # rounding is not a range
])
def test_the_range_rule(lo, hi, expected):
    assert detect_range(lo, hi)[0] == expected


@pytest.mark.parametrize("value_range", ["0,1", "0,255", "-1,1"])
def test_each_range_maps_onto_minus_one_to_one(digits, tmp_path, value_range):
    low, high = image_files.RANGES[value_range]
    scaled = digits.astype(np.float32) / 255 * (high - low) + low
    loaded = load_images(save_npy(tmp_path, scaled))
    assert loaded.source.value_range == value_range.replace(",", ", ")
    torch.testing.assert_close(loaded.images, to_model_range(torch.from_numpy(digits), 28), atol=1e-5, rtol=0)


def test_a_given_range_overrides_detection_and_must_fit(digits, tmp_path):
    path = save_npy(tmp_path, digits.astype(np.float32) / 255)
    loaded = load_images(path, value_range="-1,1")
    assert loaded.source.range_from == "given by --range" and loaded.source.value_range == "-1, 1"
    assert loaded.images.min() >= 0  # read as already in [-1, 1]: unchanged
    with pytest.raises(UsageError, match=r"values from 0 to 255 lie outside the --range \[0, 1\] given"):
        load_images(save_npy(tmp_path, digits, "bytes.npy"), value_range="0,1")
    with pytest.raises(UsageError, match="unknown --range '0,2'; choose from: 0,1, 0,255, -1,1"):
        load_images(path, value_range="0,2")


def test_values_fitting_no_range_are_refused(digits, tmp_path):
    wide = digits.astype(np.float32) / 255 * 7 - 3
    with pytest.raises(UsageError, match=r"values from -3 to 4 fit none of the accepted ranges \[0, 1\], "
                                         r"\[0, 255\] \(integers or floats\) or \[-1, 1\]; rescale them"):
        load_images(save_npy(tmp_path, wide))
    with pytest.raises(UsageError, match="values from 0 to 65535 fit none"):
        load_images(save_npy(tmp_path, digits.astype(np.uint16) * 257, "u16.npy"))


def test_values_just_outside_a_range_are_clamped(digits, tmp_path):
    x = digits.astype(np.float32) / 127.5 - 1
    x[0, 0, 0], x[1, 0, 0] = -1.0005, 1.0005
    loaded = load_images(save_npy(tmp_path, x))
    assert loaded.source.value_range == "-1, 1"
    assert loaded.images.min() == -1 and loaded.images.max() == 1


@pytest.mark.parametrize("shape", [(N, 28, 28), (N, 1, 28, 28), (N, 28, 28, 1), (N, 32, 32), (N, 1, 32, 32)])
def test_accepted_shapes(tmp_path, shape):
    loaded = load_images(save_npy(tmp_path, np.zeros(shape, np.uint8)))
    side = shape[2]
    assert loaded.images.shape == (N, 1, side, side) and loaded.source.shape == list(shape)


@pytest.mark.parametrize("shape", [(N, 3, 28, 28), (N, 28, 30), (N, 64, 64), (N, 784), (N, 28, 28, 3)])
def test_other_shapes_are_refused(tmp_path, shape):
    got = " x ".join(map(str, shape))
    with pytest.raises(UsageError, match=f"images of shape {got}; expected N x S x S, N x 1 x S x S or "
                                         f"N x S x S x 1 with S = 28 or 32"):
        load_images(save_npy(tmp_path, np.zeros(shape, np.uint8)))


def test_too_few_and_too_many_images_are_refused(tmp_path):
    with pytest.raises(UsageError, match=f"7 images; the metrics need at least {N}"):
        load_images(save_npy(tmp_path, np.zeros((N - 1, 28, 28), np.uint8)))
    with pytest.raises(UsageError, match="101 images; at most 100"):
        load_images(save_npy(tmp_path, np.zeros((101, 28, 28), np.uint8)))


def test_non_finite_values_are_refused(digits, tmp_path):
    x = digits.astype(np.float32) / 255
    x[3, 1, 2], x[5, 0, 0] = np.nan, np.inf
    with pytest.raises(UsageError, match=r"2 values are NaN or infinite \(the first in image 3\)"):
        load_images(save_npy(tmp_path, x))


def test_npz_takes_the_only_array_of_images_or_key(digits, tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, images=digits, labels=np.arange(N))
    loaded = load_images(path)
    assert loaded.source.key == "images" and loaded.source.format == "numpy .npz archive"
    several = tmp_path / "two.npz"
    np.savez(several, a=digits, b=digits)
    with pytest.raises(UsageError, match=r"holds several arrays of images \(a 8x28x28, b 8x28x28\); "
                                         r"choose one with --key NAME"):
        load_images(several)
    assert load_images(several, key="b").source.key == "b"
    with pytest.raises(UsageError, match="no array 'c'; it holds: a, b"):
        load_images(several, key="c")
    with pytest.raises(UsageError, match="--key picks an array of an .npz file"):
        load_images(save_npy(tmp_path, digits), key="a")


def test_pt_holds_one_tensor_loaded_safely(digits, tmp_path):
    path = tmp_path / "images.pt"
    torch.save(torch.from_numpy(digits).unsqueeze(1).bfloat16().div(255), path)
    loaded = load_images(path)
    assert (loaded.source.dtype, loaded.source.value_range, loaded.source.format) == ("bfloat16", "0, 1",
                                                                                      "torch tensor")
    torch.save({"images": torch.zeros(N, 28, 28)}, path)
    with pytest.raises(UsageError, match="not an array of images, and may be unsafe .*type dict, not one tensor"):
        load_images(path)
    torch.save(Image.new("L", (28, 28)), path)  # any pickled object: weights_only refuses it
    with pytest.raises(UsageError, match=r"not an array of images, and may be unsafe \(torch.load with "
                                         r"weights_only=True refused it\)"):
        load_images(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot be read as .pt"):
        load_images(path)


def test_pickled_and_foreign_numpy_files_are_refused(tmp_path):
    objects = np.empty(N, dtype=object)
    with pytest.raises(UsageError, match=r"not an array of images, and may be unsafe \(it holds pickled"):
        load_images(save_npy(tmp_path, objects))
    (tmp_path / "fake.npy").write_bytes(b"\x80\x04 a pickle")
    with pytest.raises(UsageError, match=r"cannot be read as .npy \(not a NumPy .npy file\)"):
        load_images(tmp_path / "fake.npy")
    with pytest.raises(UsageError, match="holds <U1 values; expected numbers"):
        load_images(save_npy(tmp_path, np.full((N, 28, 28), "a")))


def test_missing_files_and_unknown_kinds(tmp_path):
    with pytest.raises(UsageError, match="missing.npy: no such file or folder"):
        load_images(tmp_path / "missing.npy")
    (tmp_path / "images.jpg").write_bytes(b"")
    with pytest.raises(UsageError, match="unknown kind of file '.jpg'; give a .npy, .npz or .pt array"):
        load_images(tmp_path / "images.jpg")


def write_pngs(folder, digits, mode="L", size=28):
    folder.mkdir(exist_ok=True)
    for i, d in enumerate(digits):
        Image.fromarray(d).resize((size, size)).convert(mode).save(folder / f"{i:03d}.png")


def test_a_png_folder_reads_gray_and_rgb_alike(digits, tmp_path):
    write_pngs(tmp_path / "gray", digits)
    write_pngs(tmp_path / "rgb", digits, "RGB")
    (tmp_path / "rgb" / "notes.txt").write_text("other files are ignored")
    gray, rgb = load_images(tmp_path / "gray"), load_images(tmp_path / "rgb")
    assert torch.equal(gray.images, rgb.images)
    assert torch.equal(gray.images, load_images(save_npy(tmp_path, digits)).images)
    assert (gray.source.format, gray.source.range_from, gray.source.count) == ("folder of PNG files",
                                                                               "8-bit PNG pixels", N)


def test_png_folders_of_mixed_sizes_or_none_are_refused(digits, tmp_path):
    write_pngs(tmp_path / "mixed", digits)
    write_pngs(tmp_path / "mixed" / "sub", digits)  # not searched
    Image.new("L", (32, 32)).save(tmp_path / "mixed" / "zz.png")
    with pytest.raises(UsageError, match=r"PNG files of different sizes \(28x28: 8, 32x32: 1\); all must be one"):
        load_images(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no PNG files in the folder \(sub-folders are not searched\)"):
        load_images(tmp_path / "empty")
    write_pngs(tmp_path / "big", digits, size=32)
    assert load_images(tmp_path / "big").images.shape == (N, 1, 32, 32)


def test_a_png_bomb_is_refused_from_its_header_before_anything_is_decoded(digits, tmp_path, monkeypatch):
    write_pngs(tmp_path / "bomb", digits)
    (tmp_path / "bomb" / "zz.png").write_bytes(png_header(30000, 30000))
    with pytest.raises(UsageError, match=r"PNG files of different sizes \(28x28: 8, 30000x30000: 1\)"):
        load_images(tmp_path / "bomb")
    (tmp_path / "huge").mkdir()
    for i in range(N):
        (tmp_path / "huge" / f"{i}.png").write_bytes(png_header(12000, 12000))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(UsageError, match=r"PNG files of 12000x12000 pixels; expected 28x28 or 32x32"):
        load_images(tmp_path / "huge")
    assert not decoded
    (tmp_path / "huge" / "0.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UsageError, match=r"0.png: cannot be read as a PNG \(no PNG header\)"):
        load_images(tmp_path / "huge")


def test_an_array_header_that_lies_about_its_file_is_refused_before_anything_is_allocated(digits, tmp_path):
    lying = tmp_path / "lying.npy"
    lying.write_bytes(npy_claiming((10**9, 28, 28)))
    with pytest.raises(UsageError, match=r"lying.npy: its header declares 1000000000 x 28 x 28 uint8 values "
                                         r"\(784,000,000,000 bytes\), but the file holds 64 bytes of data; the file "
                                         r"is damaged"):
        load_images(lying)
    import zipfile

    with zipfile.ZipFile(tmp_path / "lying.npz", "w") as archive:
        archive.writestr("images.npy", npy_claiming((10**9, 28, 28)))
    with pytest.raises(UsageError, match=r"array 'images'\): its header declares 1000000000 x 28 x 28"):
        load_images(tmp_path / "lying.npz")
    np.savez(tmp_path / "many.npz", images=np.zeros((200, 28, 28), np.uint8), labels=np.zeros(200, np.int64))
    with pytest.raises(UsageError, match=r"array 'images'\): 200 images; at most 100"):
        load_images(tmp_path / "many.npz")
    np.savez(tmp_path / "two.npz", images=digits, labels=np.zeros(N, np.int64))
    assert load_images(tmp_path / "two.npz").source.key == "images"
