"""A small MNIST classifier whose penultimate layer is the feature space of the metrics.

The Inception network behind the usual FID was trained on ImageNet photographs; on 28x28
digits its features say little. This LeNet-like network is trained on MNIST itself, ships
with the package (about 0.3 MB) and is checked by SHA-256 before use, so every number the
suite reports is computed with the same network.

    conv5x5(1->16) BN ReLU maxpool2 -> conv5x5(16->32) BN ReLU maxpool2 -> fc(512->128)
                                               [128 features] -> ReLU -> fc(128->10)

It costs about 2 MFLOP per image: 10,000 images take well under a second on two CPU cores.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench import console
from bench.data import load_mnist, to_model_range
from bench.errors import BenchError, UsageError
from bench.storage import load_torch, save_torch

#: The shipped weights, package data of ``bench`` (this module lives one folder below it).
WEIGHTS_PATH = Path(__file__).parent.parent / "weights" / "mnist_classifier.pt"
#: SHA-256 of the shipped weights file; ``load_classifier`` refuses any other file.
WEIGHTS_SHA256 = "6ba97ff2f936e41eafb2990cf1e44e287af8bc151601b603410f896a34c1183a"
#: The name recorded in evaluation protocols.
NAME = "gan-bench MNIST classifier (LeNet-like, 128 penultimate features)"
#: The side of the square images the network reads.
IMAGE_SIZE = 28
#: ``bench classifier check`` fails below this test accuracy.
MIN_ACCURACY = 0.99
DEFAULT_SEED = 0
DEFAULT_EPOCHS = 8
BATCH_SIZE = 128
MAX_SHIFT = 2  # pixels of random translation during training


def fix() -> str:
    """The command that trains the classifier again."""
    return f"{console.program()} classifier train"


class MNISTClassifier(nn.Module):
    """Map images in [-1, 1], (N, 1, 28, 28), to ``(features, logits)``: (N, 128), (N, 10)."""

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, self.num_features),
        )
        self.head = nn.Linear(self.num_features, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # The features are taken before the ReLU: it zeroes about half of them, and in the
        # clipped space uniform noise lands inside the k-NN balls of real digits (precision
        # 0.94 for noise against the test set, 0.00 before the ReLU).
        features = self.body(x)
        return features, self.head(F.relu(features))


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _random_shift(x: Tensor, gen: torch.Generator) -> Tensor:
    """Translate each image by up to MAX_SHIFT pixels in x and y, filling with background."""
    n, _, h, w = x.shape
    padded = F.pad(x, (MAX_SHIFT,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (2, n, 1), generator=gen)
    rows = (offsets[0] + torch.arange(h)).to(x.device)  # (n, h)
    cols = (offsets[1] + torch.arange(w)).to(x.device)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@dataclass
class TrainResult:
    """What ``train_classifier`` produced."""

    model: MNISTClassifier
    accuracy: float
    train_s: float
    epochs: int
    seed: int


def train_classifier(
    seed: int = DEFAULT_SEED,
    epochs: int = DEFAULT_EPOCHS,
    device: torch.device | str = "cpu",
    data_dir: str | None = None,
    log: Callable[[str], None] | None = None,
    subset: int | None = None,
) -> TrainResult:
    """Train the classifier on the 60,000 training images; deterministic given the seed on CPU.

    Adam with a one-cycle learning rate, batches of 128 from a seeded permutation per
    epoch, and random shifts of up to two pixels. The global RNG is used only for the
    initial weights, inside ``fork_rng``, so the caller's RNG state is left as it was.

    Args:
        log: called with one line of text per epoch, if given.
        subset: train on the first N training images only (for tests).
    """
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    device = torch.device(device)
    images, labels = load_mnist("train", data_dir)
    images, labels = images[:subset], labels[:subset]
    x_all = to_model_range(images, IMAGE_SIZE).to(device)
    y_all = labels.to(device)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = MNISTClassifier()
    model = model.to(device=device, memory_format=torch.channels_last)

    steps_per_epoch = -(-len(x_all) // BATCH_SIZE)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    start = time.perf_counter()
    model.train()
    # On the CPU, one thread: the result is then the same bits whatever the core count, and
    # a small network like this one loses little (two threads on cores shared with other
    # work can even be slower than one, as they wait for each other at every operation).
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        _train_epochs(model, opt, sched, x_all, y_all, gen, epochs, steps_per_epoch, start, log)
    finally:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - start
    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    accuracy = test_accuracy(model, device, data_dir)
    return TrainResult(model.cpu(), accuracy, train_s, epochs, seed)


def _train_epochs(
    model: MNISTClassifier,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    x_all: Tensor,
    y_all: Tensor,
    gen: torch.Generator,
    epochs: int,
    steps_per_epoch: int,
    start: float,
    log: Callable[[str], None] | None,
) -> None:
    """Run the epochs of ``train_classifier``, logging the mean loss after each."""
    device = x_all.device
    for epoch in range(epochs):
        perm = torch.randperm(len(x_all), generator=gen).to(device)
        loss_sum = torch.zeros((), device=device)
        for b in range(steps_per_epoch):
            idx = perm[b * BATCH_SIZE : (b + 1) * BATCH_SIZE]
            x = _random_shift(x_all[idx], gen).contiguous(memory_format=torch.channels_last)
            _, logits = model(x)
            loss = F.cross_entropy(logits, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()  # no .item() per batch: it would force a device sync
        if log is not None:
            elapsed = time.perf_counter() - start
            log(f"epoch {epoch + 1}/{epochs}: mean loss {float(loss_sum) / steps_per_epoch:.4f}, {elapsed:.0f} s")


def save_weights(model: MNISTClassifier, path: Path | str = WEIGHTS_PATH) -> str:
    """Write the state dict atomically and return the file's SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_torch(path, state)
    return file_sha256(path)


def load_classifier(
    device: torch.device | str = "cpu",
    path: Path | str | None = None,
    expected_sha256: str | None = None,
) -> MNISTClassifier:
    """Return the classifier with the shipped weights, in eval mode and frozen, on ``device``.

    Args:
        path: the weights file; :data:`WEIGHTS_PATH` if None.
        expected_sha256: its required SHA-256; :data:`WEIGHTS_SHA256` if None.

    Raises:
        BenchError: the weights file is missing, or its SHA-256 is not the expected one.
    """
    path = Path(WEIGHTS_PATH if path is None else path)
    expected_sha256 = WEIGHTS_SHA256 if expected_sha256 is None else expected_sha256
    if not path.is_file():
        raise BenchError(f"classifier weights {path} not found; recreate them with `{fix()}`")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise BenchError(
            f"classifier weights {path} have SHA-256 {actual}, expected {expected_sha256}; "
            f"restore the file from the package or recreate it with `{fix()}`"
        )
    model = MNISTClassifier()
    try:
        model.load_state_dict(load_torch(path))
    except (RuntimeError, OSError, ValueError) as exc:
        raise BenchError(f"classifier weights {path} cannot be loaded ({exc}); recreate them with `{fix()}`") from None
    model.eval().requires_grad_(False)
    return model.to(device)


def to_classifier_size(images: Tensor) -> Tensor:
    """Images of another side resized to the classifier's 28x28 (bilinear, antialiased), as every evaluation does."""
    if images.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE):
        return images
    return F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def predict(model: MNISTClassifier, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Return ``(features, logits)`` for images in [-1, 1], (N, 1, 28, 28), in batches."""
    device = next(model.parameters()).device
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        f, lg = model(x)
        feats.append(f)
        logits.append(lg)
    return torch.cat(feats), torch.cat(logits)


def test_accuracy(model: MNISTClassifier, device: torch.device | str = "cpu", data_dir: str | None = None) -> float:
    """Return the share of the 10,000 MNIST test images the model classifies correctly."""
    images, labels = load_mnist("test", data_dir)
    was_training = model.training
    model.eval()
    try:
        model.to(device)
        _, logits = predict(model, to_model_range(images, IMAGE_SIZE))
    finally:
        model.train(was_training)
    return float((logits.argmax(1).cpu() == labels).float().mean())


test_accuracy.__test__ = False  # not a pytest test, despite its name
