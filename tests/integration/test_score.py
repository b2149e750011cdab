"""``bench score``: real digits land by the train-vs-test reference, noise by the noise reference.

1,000 images keep it fast; ``bench score`` scores the reference points at the count it is
given, so they compare (the train-vs-test FID is 7.6 at 1,000 images, 2.5 at 10,000).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.data import load_mnist, to_model_range

N = 1000


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """1,000 MNIST test digits drawn at random, uint8 (N, 28, 28).

    Not the first 1,000: the test file's first half comes from other writers than its second,
    so a slice of it is further from the whole than a random draw.
    """
    images, _ = load_mnist("test")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(1))
    return images[order[:N]].numpy()


def score(path, out, capsys) -> tuple[dict, str]:
    assert main(["score", str(path), "--device", "cpu", "--out", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_mnist_test_digits_score_by_the_train_vs_test_reference(digits, tmp_path, capsys):
    np.save(tmp_path / "digits.npy", digits)
    result, printed = score(tmp_path / "digits.npy", tmp_path / "digits.json", capsys)
    reference = result["references"]["train_vs_test"]
    assert abs(result["metrics"]["fid"] - reference["fid"]) < 0.5 * reference["fid"]
    assert result["metrics"]["modes_covered"] == 10 and result["metrics"]["precision"] > 0.7
    # The reference points and the protocol are at the count given.
    assert reference["protocol"]["n_generated"] == N and result["protocol"]["n_generated"] == N
    assert result["metrics"]["protocol"] == result["protocol"]
    source = result["input"]
    assert (source["count"], source["shape"], source["dtype"], source["value_range"]) == (N, [N, 28, 28], "uint8",
                                                                                           "0, 255")
    assert "read as [0, 255] (detected: a value above 1 (255)" in printed
    assert "train vs test" in printed and "these images" in printed and f"{N} images vs MNIST test" in printed

    # The same digits as PNG files, half of them RGB, score the same.
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, d in enumerate(digits):
        Image.fromarray(d).convert("RGB" if i % 2 else "L").save(folder / f"{i:04d}.png")
    from_pngs, _ = score(folder, tmp_path / "pngs.json", capsys)
    assert from_pngs["metrics"]["fid"] == result["metrics"]["fid"]


def test_uniform_noise_scores_by_the_noise_reference(tmp_path, capsys):
    noise = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(99))
    torch.save(noise, tmp_path / "noise.pt")
    result, printed = score(tmp_path / "noise.pt", tmp_path / "noise.json", capsys)
    reference = result["references"]["noise_vs_test"]
    assert abs(result["metrics"]["fid"] - reference["fid"]) < 0.02 * reference["fid"]
    assert result["metrics"]["modes_covered"] == reference["modes_covered"]
    assert result["input"]["value_range"] == "0, 1" and "read as [0, 1]" in printed


def test_32x32_images_are_scored_against_real_digits_brought_to_32x32(digits, tmp_path, capsys):
    torch.save(to_model_range(torch.from_numpy(digits), 32), tmp_path / "big.pt")
    assert main(["score", str(tmp_path / "big.pt"), "--device", "cpu", "--out", str(tmp_path / "big.json")]) == 0
    result = json.loads((tmp_path / "big.json").read_text())
    assert (result["input"]["image_size"], result["input"]["value_range"]) == (32, "-1, 1")
    assert result["protocol"]["real_image_size"] == 32 and result["metrics"]["modes_covered"] == 10
    # Real digits that went the 32x32 way are near the train-vs-test reference of that side, not 200 above it.
    assert result["metrics"]["fid"] < 2 * result["references"]["train_vs_test"]["fid"] + 5


#: ``bench score`` in a process of its own that writes its peak resident memory (KiB, VmHWM: its own, unlike
#: ru_maxrss, which a child inherits from the process it was forked from) to the file given last.
_MEASURED = ("import re, sys; from bench.cli import main; status = main(sys.argv[1:-1]); "
             "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
             "open(sys.argv[-1], 'w').write(peak); sys.exit(status)")


def test_hostile_images_are_one_line_and_bounded_memory(digits, tmp_path):
    import subprocess
    import sys
    import zipfile

    from helpers import REPO, npy_claiming, png_header

    bomb = tmp_path / "bomb"
    bomb.mkdir()
    for i, d in enumerate(digits):
        Image.fromarray(d).save(bomb / f"{i:04d}.png")
    (bomb / "zzzz.png").write_bytes(png_header(30000, 30000))
    huge = tmp_path / "huge"
    huge.mkdir()
    for i in range(N):
        (huge / f"{i:04d}.png").write_bytes(png_header(12000, 12000))
    (tmp_path / "lying.npy").write_bytes(npy_claiming((10**9, 28, 28)))
    with zipfile.ZipFile(tmp_path / "lying.npz", "w") as archive:
        archive.writestr("images.npy", npy_claiming((10**9, 28, 28)))
    for path, message in [(bomb, "PNG files of different sizes (28x28: 1000, 30000x30000: 1)"),
                          (huge, "PNG files of 12000x12000 pixels; expected 28x28 or 32x32"),
                          (tmp_path / "lying.npy", "its header declares 1000000000 x 28 x 28 uint8 values"),
                          (tmp_path / "lying.npz", "its header declares 1000000000 x 28 x 28 uint8 values")]:
        peak = tmp_path / "peak"
        done = subprocess.run([sys.executable, "-c", _MEASURED, "score", str(path), str(peak)], cwd=REPO,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert int(peak.read_text()) < 1024 * 1024, "over 1 GiB for an input refused from its headers"
