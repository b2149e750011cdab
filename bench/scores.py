"""The quality metrics: what each one is, once, and the score that computes it.

A :class:`Metric` holds every fact about one number a run reports: its key in run.json and the
CSVs, its label, the factor and precision tables show it at, whether a spread goes with it and
which direction is better. :mod:`bench.record` builds its fields from :data:`METRICS`, and every
table, format and figure reads the labels here.

A score is an object with ``update(features, logits)``, ``compute()``, ``reset()`` and the
metrics it computes (``metrics``). One classifier pass gives every generated image's
penultimate features and logits; each score takes what it needs from them. The real side
(features and k-NN radii of the 10,000 MNIST test images) is handed to a score once, when it is
built (:class:`RealSide`), and ``reset()`` clears only the generated side, as torchmetrics'
``reset_real_features=False`` does. The evaluator builds every score of :data:`SCORES`, so adding
a metric is a class here (its descriptors on it, the class listed in ``SCORES``) and its test.

The scores follow this protocol rather than subclassing ``torchmetrics.Metric``: they take two
inputs (features and logits) rather than images, they need no distributed sync, and FID and KID
run on the CPU in float64 while precision/recall stays on the evaluation device. FID and KID
themselves are torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance``, fed
through an identity feature module, so torchmetrics does all their arithmetic and both restore
their real side through the public ``update(real_features, real=True)``.

torch is imported where a score computes, not at the top, so that run.json, the tables and
``bench report`` read the descriptors without loading it. The plain functions
(:func:`knn_radii`, :func:`precision_recall`, :func:`classifier_score`, :func:`mode_coverage`)
are the math the objects wrap.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from bench.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

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


@dataclass(frozen=True, kw_only=True)
class Metric:
    """Everything about one reported number, read by run.json, every table and every format."""

    #: The key in run.json (``metrics``, ``evaluations``), the CSVs, JSON reports and ``--columns``.
    name: str
    #: The long form: the row of the metrics table under a run.
    label: str
    #: ``float``, ``int`` (a count) or ``list[float]``.
    type: Any = float
    #: True where lower is better, False where higher is, None where neither (a distribution).
    lower_is_better: bool | None
    #: Recorded at every evaluation and shown in every comparison and CSV; the others (a spread, a
    #: distribution, an optional backbone's FID) stay with the final metrics in run.json.
    headline: bool = True
    #: The terse form: the comparison's column header; None where the comparison has no column.
    header: str | None = None
    #: The comparison's ``--columns`` key, where it is not ``name``.
    column: str | None = None
    #: The factor the comparison shows the metric at (KID x 10^3).
    scale: float = 1.0
    #: The comparison shows mean ± std over seeds, not the mean alone.
    spread: bool = False
    #: Shown in a terminal too narrow for every column (the report files always show it).
    terse: bool = True
    #: The metric whose spread this one is (shown as ``value ± spread`` beside it in the metrics table).
    spread_of: str | None = None
    #: Computed only on request, not by every evaluation.
    optional: bool = False

    @property
    def column_key(self) -> str:
        return self.column or self.name

    @property
    def count(self) -> bool:
        return self.type is int


@dataclass(frozen=True)
class RealSide:
    """What a score is built from: the real images' features and k-NN radii (on the CPU), the
    evaluation device and the evaluation seed (which also draws KID's subsets)."""

    features: Tensor
    radii: Tensor
    device: torch.device
    seed: int


class Score(Protocol):
    """A generated-side score: fed the classifier's outputs in chunks, computed once at the end."""

    metrics: ClassVar[tuple[Metric, ...]]

    def __init__(self, real: RealSide) -> None: ...

    def update(self, features: Tensor, logits: Tensor) -> None: ...

    def compute(self) -> dict[str, Value]: ...

    def reset(self) -> None: ...


# --- the math ------------------------------------------------------------------------------------


def _sq_distances(a: Tensor, b: Tensor, b_sq: Tensor) -> Tensor:
    """Return the squared Euclidean distances between rows of ``a`` and of ``b``, clamped at 0."""
    d = b_sq.unsqueeze(0).addmm(a, b.t(), alpha=-2.0)
    return d.add_(a.square().sum(1, keepdim=True)).clamp_min_(0.0)


def knn_radii(features: Tensor, k: int = PR_K, block: int = DISTANCE_BLOCK) -> Tensor:
    """Return each row's distance to its k-th nearest neighbour in ``features``, itself excluded."""
    import torch

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
    import torch

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
    log_p = logits.double().log_softmax(1)
    log_marginal = log_p.logsumexp(0) - math.log(len(log_p))
    kl = (log_p.exp() * (log_p - log_marginal)).sum(1)
    return float(kl.mean().exp())


def mode_coverage(logits: Tensor, min_share: float = MIN_MODE_SHARE) -> tuple[list[float], int, float]:
    """Return the share of samples per predicted digit, how many reach ``min_share``, and KL to uniform."""
    return _coverage(_digit_counts(logits), min_share)


def _digit_counts(logits: Tensor) -> Tensor:
    """Return how many samples the classifier assigns to each digit (int64, on the CPU)."""
    return logits.argmax(1).cpu().bincount(minlength=10)


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


def _precomputed(num_features: int) -> torch.nn.Module:
    """The ``feature`` module handed to torchmetrics: the features are already computed."""
    from torch import nn

    identity = nn.Identity()
    identity.num_features = num_features  # read by FrechetInceptionDistance instead of probing
    return identity


# FID and KID run on the CPU: their states are small, FID's sums are float64 (which some
# accelerators lack), and the eigenvalues of a 128x128 matrix gain nothing on a device.


class FID:
    """Fréchet distance between the Gaussians fitted to real and generated features (torchmetrics)."""

    metrics = (Metric(name="fid", label="FID (MNIST classifier features)", header="FID", lower_is_better=True,
                      spread=True),)

    def __init__(self, real: RealSide):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.metric = FrechetInceptionDistance(feature=_precomputed(real.features.shape[1]),
                                               reset_real_features=False)
        self.metric.update(real.features.float().cpu(), real=True)

    def update(self, features: Tensor, logits: Tensor) -> None:
        self.metric.update(features.float().cpu(), real=False)

    def compute(self) -> dict[str, Value]:
        return {"fid": float(self.metric.compute())}

    def reset(self) -> None:
        self.metric.reset()  # keeps the real side: reset_real_features=False


class KID:
    """Kernel inception distance (polynomial MMD over random subsets, torchmetrics): mean and std.

    The subsets are drawn from the evaluation seed at every ``compute``, so the same features
    always give the same KID, and the caller's RNG is left as it was.
    """

    metrics = (
        Metric(name="kid", label="KID (MNIST classifier features)", header="KID×10³", scale=1e3,
               lower_is_better=True, spread=True),
        Metric(name="kid_std", label="KID's std over its subsets", lower_is_better=None, headline=False,
               spread_of="kid"),
    )

    def __init__(self, real: RealSide, subsets: int = KID_SUBSETS):
        from torchmetrics.image.kid import KernelInceptionDistance

        self.seed = real.seed
        self.n_real = len(real.features)
        self.gamma = kid_gamma(real.features)
        self._n_generated = 0
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self.metric = KernelInceptionDistance(
                feature=_precomputed(real.features.shape[1]),
                subsets=subsets,
                subset_size=KID_SUBSET_SIZE,
                gamma=self.gamma,
                reset_real_features=False,
            )
        self.metric.update(real.features.float().cpu(), real=True)

    def update(self, features: Tensor, logits: Tensor) -> None:
        self.metric.update(features.float().cpu(), real=False)
        self._n_generated += len(features)

    def compute(self) -> dict[str, Value]:
        import torch

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

    metrics = (
        Metric(name="precision", label=f"precision (k={PR_K})", header="prec.", lower_is_better=False),
        Metric(name="recall", label=f"recall (k={PR_K})", header="recall", lower_is_better=False),
    )

    def __init__(self, real: RealSide, k: int = PR_K):
        self.real_features = real.features.to(real.device)
        self.real_radii = real.radii.to(real.device)
        self.k = k
        self._generated: list[Tensor] = []

    def update(self, features: Tensor, logits: Tensor) -> None:
        self._generated.append(features)

    def compute(self) -> dict[str, Value]:
        import torch

        fake = torch.cat(self._generated)
        precision, recall = precision_recall(self.real_features, fake, self.k, real_radii=self.real_radii)
        return {"precision": precision, "recall": recall}

    def reset(self) -> None:
        self._generated.clear()


class ClassifierScore:
    """The Inception Score formula on the MNIST classifier's softmax (1 to 10)."""

    metrics = (Metric(name="classifier_score", label="classifier score (max 10)", header="class. score",
                      lower_is_better=False, terse=False),)

    def __init__(self, real: RealSide | None = None) -> None:
        self._logits: list[Tensor] = []

    def update(self, features: Tensor, logits: Tensor) -> None:
        self._logits.append(logits)

    def compute(self) -> dict[str, Value]:
        import torch

        return {"classifier_score": classifier_score(torch.cat(self._logits))}

    def reset(self) -> None:
        self._logits.clear()


class ModeCoverage:
    """Share of samples per predicted digit, digits covered, and KL(shares || uniform)."""

    metrics = (
        Metric(name="modes_covered", label=f"digits covered (>= {MIN_MODE_SHARE:.0%})", type=int, header="modes",
               column="modes", lower_is_better=False),
        Metric(name="mode_shares", label="share of samples per digit", type=list[float], lower_is_better=None,
               headline=False),
        Metric(name="mode_kl", label="KL(digit shares || uniform)", lower_is_better=True),
    )

    def __init__(self, real: RealSide | None = None, min_share: float = MIN_MODE_SHARE):
        import torch

        self.min_share = min_share
        self._counts = torch.zeros(10, dtype=torch.int64)

    def update(self, features: Tensor, logits: Tensor) -> None:
        self._counts += _digit_counts(logits)

    def compute(self) -> dict[str, Value]:
        shares, covered, kl = _coverage(self._counts, self.min_share)
        return {"modes_covered": covered, "mode_shares": shares, "mode_kl": kl}

    def reset(self) -> None:
        self._counts.zero_()


#: Every score an evaluation computes, in the order their metrics are recorded and shown.
SCORES: tuple[type[Score], ...] = (FID, KID, PrecisionRecall, ClassifierScore, ModeCoverage)
#: The classic FID on Inception-v3 features, computed only on request (``--fid-backbone inception``,
#: :mod:`bench.metrics.inception`) and only for a run's final metrics.
FID_INCEPTION = Metric(name="fid_inception", label="FID (Inception-v3 features)", lower_is_better=True,
                       headline=False, optional=True)
#: Every metric a run can record, in run.json's order.
METRICS: tuple[Metric, ...] = (*(metric for score in SCORES for metric in score.metrics), FID_INCEPTION)
#: The metrics recorded at every evaluation and shown in every table and CSV, in this order.
METRIC_NAMES: tuple[str, ...] = tuple(metric.name for metric in METRICS if metric.headline)


def metric(name: str) -> Metric:
    """The descriptor of the metric ``name`` (a KeyError names it when there is none)."""
    return _BY_NAME[name]


_BY_NAME = {m.name: m for m in METRICS}
#: The metric comparisons rank by: their pairwise tests, the bold row and time to quality are on it.
RANKING = metric("fid")
