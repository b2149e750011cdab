"""MNIST as shipped: checksums, known facts, and the batch sampler."""

from __future__ import annotations

import gzip
import shutil

import pytest
import torch

from bench.data import PACKAGED_DIR, BatchSampler, load_mnist, to_model_range, training_images
from bench.errors import DataError, UsageError


def test_known_facts_of_the_training_split():
    images, labels = load_mnist("train")
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    x = images.double() / 255
    assert x.mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert x.std().item() == pytest.approx(0.3081, abs=5e-5)


def test_known_facts_of_the_test_split():
    images, labels = load_mnist("test")
    assert images.shape == (10000, 28, 28)
    assert torch.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_model_range_and_resize():
    images, _ = load_mnist("test")
    x28 = to_model_range(images[:16], 28)
    x32 = to_model_range(images[:16], 32)
    assert x28.shape == (16, 1, 28, 28) and x32.shape == (16, 1, 32, 32)
    for x in (x28, x32):
        assert x.min() == -1 and x.max() == 1
    # 8-bit levels survive: every value is k/127.5 - 1 for an integer k.
    k = (x32 + 1) * 127.5
    assert torch.allclose(k, k.round(), atol=1e-4)


def _copy_data(tmp_path):
    for f in PACKAGED_DIR.glob("*.gz"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_missing_file_is_named(tmp_path):
    data = _copy_data(tmp_path)
    (data / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_mnist("train", str(data))


def test_altered_file_names_file_and_expected_checksum(tmp_path):
    data = _copy_data(tmp_path)
    raw = bytearray(gzip.decompress((data / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] ^= 1
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(
        DataError, match="t10k-labels-idx1-ubyte.*ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ):
        load_mnist("test", str(data))


def test_truncated_file_is_reported(tmp_path):
    data = _copy_data(tmp_path)
    path = data / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_mnist("test", str(data))


def test_uncompressed_files_are_accepted(tmp_path):
    for f in PACKAGED_DIR.glob("t10k*.gz"):
        (tmp_path / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    images, labels = load_mnist("test", str(tmp_path))
    assert len(images) == len(labels) == 10000


def test_subset_is_fixed_and_in_range():
    a = training_images(28, torch.device("cpu"), subset=100)
    b = training_images(28, torch.device("cpu"), subset=100)
    assert a.shape == (100, 1, 28, 28) and torch.equal(a, b)
    with pytest.raises(UsageError, match="--train-subset"):
        training_images(28, torch.device("cpu"), subset=60001)


def test_sampler_covers_each_epoch_once_with_a_partial_last_batch():
    data = torch.arange(10).float()
    sampler = BatchSampler(data, batch_size=4, seed=3)
    assert sampler.batches_per_epoch == 3
    epoch = [sampler.next() for _ in range(3)]
    assert [len(b) for b in epoch] == [4, 4, 2]
    assert sorted(torch.cat(epoch).tolist()) == list(range(10))
    assert sampler.state.epoch == 1 and sampler.state.batch == 0
    again = BatchSampler(data, batch_size=4, seed=3)
    assert torch.equal(torch.cat([again.next() for _ in range(3)]), torch.cat(epoch))
    # Each epoch has its own order.
    assert not torch.equal(torch.cat([sampler.next() for _ in range(3)]), torch.cat(epoch))


def test_sampler_rejects_bad_batch_sizes():
    with pytest.raises(UsageError):
        BatchSampler(torch.zeros(5), batch_size=0, seed=0)
    with pytest.raises(UsageError, match="larger than the training set"):
        BatchSampler(torch.zeros(5), batch_size=6, seed=0)
