"""The generated-side scores, each an object with ``update(features, logits)``, ``compute()``, ``reset()``.

One classifier pass gives every generated image's penultimate features and logits; each score
takes what it needs from them. The real side (features and k-NN radii of the 10,000 MNIST test
images) is handed to a score once, when it is built, and ``reset()`` clears only the generated
side, as torchmetrics' ``reset_real_features=False`` does.

The scores follow a five-line :class:`Score` protocol rather than subclassing
``torchmetrics.Metric``: they take two inputs (features and logits) rather than images, they
need no distributed sync, and FID and KID run on the CPU in float64 while precision/recall
stays on the evaluation device. FID and KID themselves are torchmetrics'
``FrechetInceptionDistance`` and ``KernelInceptionDistance``, fed through an identity feature
module (:class:`_Precomputed`), so torchmetrics does all their arithmetic and both restore
their real side through the public ``update(real_features, real=True)``.

The plain functions (:func:`knn_radii`, :func:`precision_recall`, :func:`classifier_score`,
:func:`mode_coverage`) are the math the objects wrap.
"""

from __future__ import annotations

import math
import warnings
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from bench.errors import UsageError

#: Nearest neighbour whose distance is a sample's radius in precision/recall.
PR_K = 3
#: Rows of the distance matrix held at once by precision/recall (512 x 10,000 floats).
DISTANCE_BLOCK = 512
KID_SUBSETS = 50
KID_SUBSET_SIZE = 1000
KID_KERNEL = "polynomial, degree 3, coef 1"
#: A digit counts as covered when at least this share of the samples is classified as it.
MIN_MODE_SHARE = 0.01

#: What a score computes: a number, a count, or one number per digit.
Value = float | int | list[float]


class Score(Protocol):
    """A generated-side score: fed the classifier's outputs in chunks, computed once at the end."""

    def update(self, features: Tensor, logits: Tensor) -> None: ...

    def compute(self) -> dict[str, Value]: ...

    def reset(self) -> None: ...


# --- the math ------------------------------------------------------------------------------------


def _sq_distances(a: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    """Return the squared Euclidean distances between rows of ``a`` and of ``b``, clamped at 0."""
    d = torch.addmm(b_sq.unsqueeze(0), a, b.t(), alpha=-2.0)
    return d.add_(a.square().sum(1, keepdim=True)).clamp_min_(0.0)


def knn_radii(features: Tensor, k: int = PR_K, block: int = DISTANCE_BLOCK) -> Tensor:
    """Return each row's distance to its k-th nearest neighbour in ``features``, itself excluded."""
    if len(features) <= k:
        raise UsageError(f"precision/recall with k={k} needs more than {k} samples, got {len(features)}")
    sq = features.square().sum(1)
    radii = []
    for i in range(0, len(features), block):
        d = _sq_distances(features[i : i + block], features, sq)
        # The k+1 smallest include the row itself (distance 0), hence index k.
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii).sqrt_()


def precision_recall(
    real: Tensor,
    fake: Tensor,
    k: int = PR_K,
    real_radii: Tensor | None = None,
    fake_radii: Tensor | None = None,
    block: int = DISTANCE_BLOCK,
) -> tuple[float, float]:
    """Return the improved precision and recall of Kynkäänniemi et al. (2019).

    Precision is the share of generated samples inside the k-NN ball of some real sample;
    recall is the share of real samples inside the k-NN ball of some generated sample.
    Distances are computed in row blocks, so memory stays at ``block`` x N floats.
    """
    real_radii = knn_radii(real, k, block) if real_radii is None else real_radii
    fake_radii = knn_radii(fake, k, block) if fake_radii is None else fake_radii
    real_r2 = real_radii.square().unsqueeze(0)
    real_sq = real.square().sum(1)
    in_real = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
    in_fake = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for i in range(0, len(fake), block):
        d = _sq_distances(fake[i : i + block], real, real_sq)  # (b, n_real)
        in_real[i : i + block] = (d <= real_r2).any(1)
        in_fake |= (d <= fake_radii[i : i + block].square().unsqueeze(1)).any(0)
    return float(in_real.float().mean()), float(in_fake.float().mean())


def classifier_score(logits: Tensor) -> float:
    """Return exp(E_x[KL(p(y|x) || p(y))]) on the classifier's softmax: 1 to 10."""
    log_p = F.log_softmax(logits.double(), dim=1)
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(len(log_p))
    kl = (log_p.exp() * (log_p - log_marginal)).sum(1)
    return float(kl.mean().exp())


def mode_coverage(logits: Tensor, min_share: float = MIN_MODE_SHARE) -> tuple[list[float], int, float]:
    """Return the share of samples per predicted digit, how many reach ``min_share``, and KL to uniform."""
    return _coverage(_digit_counts(logits), min_share)


def _digit_counts(logits: Tensor) -> Tensor:
    """Return how many samples the classifier assigns to each digit (int64, on the CPU)."""
    return torch.bincount(logits.argmax(1).cpu(), minlength=10)


def _coverage(counts: Tensor, min_share: float) -> tuple[list[float], int, float]:
    counts = counts.double()
    shares = counts / counts.sum()
    nonzero = shares[shares > 0]
    kl = float((nonzero * (nonzero * 10).log()).sum())
    return shares.tolist(), int((shares >= min_share).sum()), kl


def kid_gamma(real_features: Tensor) -> float:
    """Return the KID kernel's gamma for these real features: 1 / E|f_real|^2.

    KID's kernel is (gamma * x.y + 1) ** 3. torchmetrics' default gamma, 1/dim, suits
    Inception features (x.y/dim well below 1); the classifier's are larger (x.y/dim about 5),
    and the cube then makes the subset-to-subset spread swamp the signal. This gamma brings
    x.y * gamma to order one, and is fixed by the real side.
    """
    return 1.0 / float(real_features.double().square().sum(1).mean())


def kid_subset_size(n_generated: int, n_real: int) -> int:
    """Return the size of KID's subsets: :data:`KID_SUBSET_SIZE`, or fewer when fewer samples exist."""
    return min(KID_SUBSET_SIZE, n_generated, n_real)


# --- the scores ------------------------------------------------------------------------------


class _Precomputed(nn.Module):
    """The ``feature`` module handed to torchmetrics: the features are already computed."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features  # read by FrechetInceptionDistance instead of probing

    def forward(self, features: Tensor) -> Tensor:
        return features


# FID and KID run on the CPU: their states are small, FID's sums are float64 (which some
# accelerators lack), and the eigenvalues of a 128x128 matrix gain nothing on a device.


class FID:
    """Fréchet distance between the Gaussians fitted to real and generated features (torchmetrics)."""

    def __init__(self, real_features: Tensor):
        self.metric = FrechetInceptionDistance(feature=_Precomputed(real_features.shape[1]), reset_real_features=False)
        self.metric.update(real_features.float().cpu(), real=True)

    def update(self, features: Tensor, logits: Tensor) -> None:
        self.metric.update(features.float().cpu(), real=False)

    def compute(self) -> dict[str, Value]:
        return {"fid": float(self.metric.compute())}

    def reset(self) -> None:
        self.metric.reset()  # keeps the real side: reset_real_features=False


class KID:
    """Kernel inception distance (polynomial MMD over random subsets, torchmetrics): mean and std.

    The subsets are drawn from ``seed`` at every ``compute``, so the same features always give
    the same KID, and the caller's RNG is left as it was.
    """

    def __init__(self, real_features: Tensor, seed: int, subsets: int = KID_SUBSETS):
        self.seed = seed
        self.n_real = len(real_features)
        self.gamma = kid_gamma(real_features)
        self._n_generated = 0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self.metric = KernelInceptionDistance(
                feature=_Precomputed(real_features.shape[1]),
                subsets=subsets,
                subset_size=KID_SUBSET_SIZE,
                gamma=self.gamma,
                reset_real_features=False,
            )
        self.metric.update(real_features.float().cpu(), real=True)

    def update(self, features: Tensor, logits: Tensor) -> None:
        self.metric.update(features.float().cpu(), real=False)
        self._n_generated += len(features)

    def compute(self) -> dict[str, Value]:
        self.metric.subset_size = kid_subset_size(self._n_generated, self.n_real)
        # KernelInceptionDistance.compute draws its subsets with the global torch.randperm.
        # fork_rng restores the caller's CPU RNG afterwards, and seeding only the CPU
        # generator inside it makes the subsets the same at every evaluation.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed)
            mean, std = self.metric.compute()
        return {"kid": float(mean), "kid_std": float(std)}

    def reset(self) -> None:
        self.metric.reset()  # keeps the real side: reset_real_features=False
        self._n_generated = 0


class PrecisionRecall:
    """Improved precision and recall (k-NN balls) against real features whose radii are precomputed."""

    def __init__(self, real_features: Tensor, real_radii: Tensor, k: int = PR_K):
        self.real_features = real_features
        self.real_radii = real_radii
        self.k = k
        self._generated: list[Tensor] = []

    def update(self, features: Tensor, logits: Tensor) -> None:
        self._generated.append(features)

    def compute(self) -> dict[str, Value]:
        fake = torch.cat(self._generated)
        precision, recall = precision_recall(self.real_features, fake, self.k, real_radii=self.real_radii)
        return {"precision": precision, "recall": recall}

    def reset(self) -> None:
        self._generated.clear()


class ClassifierScore:
    """The Inception Score formula on the MNIST classifier's softmax (1 to 10)."""

    def __init__(self) -> None:
        self._logits: list[Tensor] = []

    def update(self, features: Tensor, logits: Tensor) -> None:
        self._logits.append(logits)

    def compute(self) -> dict[str, Value]:
        return {"classifier_score": classifier_score(torch.cat(self._logits))}

    def reset(self) -> None:
        self._logits.clear()


class ModeCoverage:
    """Share of samples per predicted digit, digits covered, and KL(shares || uniform)."""

    def __init__(self, min_share: float = MIN_MODE_SHARE):
        self.min_share = min_share
        self._counts = torch.zeros(10, dtype=torch.int64)

    def update(self, features: Tensor, logits: Tensor) -> None:
        self._counts += _digit_counts(logits)

    def compute(self) -> dict[str, Value]:
        shares, covered, kl = _coverage(self._counts, self.min_share)
        return {"modes_covered": covered, "mode_shares": shares, "mode_kl": kl}

    def reset(self) -> None:
        self._counts.zero_()
