"""Sample-quality metrics in the feature space of the shipped MNIST classifier.

One evaluation draws a fixed set of latents, generates the images, and runs the classifier
once over them: its penultimate features feed FID, KID and precision/recall, its softmax
feeds the classifier score and the mode coverage. The real side (the 10,000 MNIST test
images) is computed once per classifier and kept in memory and on disk, as torchmetrics'
``reset_real_features=False`` intends.

FID and KID are torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance``.
Their ``feature`` module is an identity (:class:`_Precomputed`): ``update`` receives the
classifier features computed in the single pass above, so torchmetrics does all the FID
and KID arithmetic (float64 running sums, the matrix square root, the polynomial-kernel
MMD over subsets) without running a network of its own. The real side of each metric is
filled from the cache: FID's three ``real_features_*`` sums are assigned, KID's
``real_features`` list is filled with one ``update(real=True)``; ``reset()`` then clears
only the generated side.

A FID computed here is not comparable to a FID computed with Inception-v3 features; it is
reported as "FID (MNIST classifier features)" (see :data:`DISPLAY_NAMES`).
:func:`inception_fid` computes the classic one, given Inception weights that the user
provides.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from bench.metrics import classifier
from bench.metrics.classifier import MNISTClassifier, load_classifier, predict
from bench.data import FILES, SUBSET_SEED, load_mnist, to_model_range
from bench.errors import UsageError

#: The latent seed of every evaluation; separate from any training seed.
EVAL_SEED = 1234
N_SAMPLES = 10_000
#: Latents are drawn and images generated and classified in chunks of this size.
BATCH = 1000
#: Nearest neighbour whose distance is a sample's radius in precision/recall.
PR_K = 3
KID_SUBSETS = 50
KID_SUBSET_SIZE = 1000
#: Rows of the distance matrix held at once by precision/recall (512 x 10,000 floats).
DISTANCE_BLOCK = 512
IMAGE_SIZE = 28
#: Bump when the real-side statistics or the reference points change meaning.
PROTOCOL_VERSION = 1
RESIZE_RULE = "non-28x28 images -> 28x28 by F.interpolate(mode='bilinear', antialias=True, align_corners=False)"

DISPLAY_NAMES = {
    "fid": "FID (MNIST classifier features)",
    "kid": "KID (MNIST classifier features)",
    "kid_std": "KID std over subsets",
    "precision": f"precision (k={PR_K}, classifier features)",
    "recall": f"recall (k={PR_K}, classifier features)",
    "classifier_score": "classifier score (Inception Score formula, MNIST classifier, max 10)",
    "modes_covered": "digits covered (at least 1% of samples)",
    "mode_shares": "share of samples classified as each digit",
    "mode_kl": "KL(digit shares || uniform), nats",
    "eval_s": "evaluation time (s)",
    "fid_inception": "FID (Inception-v3 features)",
}

INCEPTION_HELP = (
    "the Inception FID needs torch-fidelity (pip install -e \".[inception]\") and the Inception-v3 weights "
    "(pt_inception-2015-12-05, as weights-inception-2015-12-05-6726825d.pth from the torch-fidelity v0.2.0 "
    "GitHub release) passed as --inception-weights PATH; nothing is downloaded automatically"
)


def cache_dir() -> Path:
    """Return the folder of on-disk caches: ``$GAN_BENCH_CACHE`` or ``~/.cache/gan-bench``."""
    env = os.environ.get("GAN_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gan-bench"


# --- metrics on features and logits --------------------------------------------------------


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


def mode_coverage(logits: Tensor, min_share: float = 0.01) -> tuple[list[float], int, float]:
    """Return the share of samples per predicted digit, how many reach ``min_share``, and KL to uniform."""
    counts = torch.bincount(logits.argmax(1).cpu(), minlength=10).double()
    shares = counts / counts.sum()
    nonzero = shares[shares > 0]
    kl = float((nonzero * (nonzero * 10).log()).sum())
    return shares.tolist(), int((shares >= min_share).sum()), kl


# --- the real side, computed once ------------------------------------------------------------


class _Precomputed(nn.Module):
    """The ``feature`` module handed to torchmetrics: the features are already computed."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features  # read by FrechetInceptionDistance instead of probing

    def forward(self, features: Tensor) -> Tensor:
        return features


@dataclass
class RealStats:
    """Classifier features of the real images, and everything derived from them once."""

    features: Tensor  # (N, F) float32
    fid_sum: Tensor  # (F,) float64, torchmetrics' real_features_sum
    fid_cov_sum: Tensor  # (F, F) float64, torchmetrics' real_features_cov_sum
    radii: Tensor  # (N,) float32, distance to the PR_K-th nearest real neighbour

    def to_dict(self) -> dict[str, Tensor]:
        """Return the fields as a dict of tensors (what the disk cache stores)."""
        return {"features": self.features, "fid_sum": self.fid_sum, "fid_cov_sum": self.fid_cov_sum, "radii": self.radii}


def _fid_metric(num_features: int) -> FrechetInceptionDistance:
    return FrechetInceptionDistance(feature=_Precomputed(num_features), reset_real_features=False)


def compute_real_stats(model: MNISTClassifier, data_dir: str | None = None, k: int = PR_K) -> RealStats:
    """Compute the real-side statistics of the MNIST test split from scratch with ``model``."""
    images, _ = load_mnist("test", data_dir)
    features, _ = predict(model, to_model_range(images, IMAGE_SIZE), BATCH)
    features = features.float().cpu()
    fid = _fid_metric(features.shape[1])
    fid.update(features, real=True)
    return RealStats(features, fid.real_features_sum.clone(), fid.real_features_cov_sum.clone(), knn_radii(features, k))


def _key(kind: str, **parts: Any) -> str:
    """Return a cache key: the SHA-256 of everything the cached value depends on."""
    parts = {"kind": kind, "version": PROTOCOL_VERSION, "classifier_sha256": classifier.WEIGHTS_SHA256, **parts}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _data_digests(*names: str) -> dict[str, str]:
    # load_mnist verifies every file against these digests, so they name the data exactly.
    return {name: FILES[name][0] for name in names}


#: In-memory caches, keyed like the files on disk.
_MEMORY: dict[str, Any] = {}


def clear_memory_cache() -> None:
    """Forget the in-memory real statistics and reference points (the disk cache stays)."""
    _MEMORY.clear()


def _cache_path(kind: str, key: str) -> Path:
    return cache_dir() / f"{kind}-{key[:24]}.pt"


def _load_cache(path: Path, key: str) -> dict | None:
    """Return the cached dict at ``path`` if it is intact and made for ``key``, else None."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, truncated, corrupt or foreign: recompute it
        return None
    if not isinstance(blob, dict) or blob.get("key") != key or not isinstance(blob.get("value"), dict):
        return None
    return blob["value"]


def _save_cache(path: Path, key: str, value: dict) -> None:
    """Write ``value`` to ``path`` atomically; a cache that cannot be written is only a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save({"key": key, "value": value}, fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"cannot write the metrics cache {path} ({exc}); it will be recomputed next time", stacklevel=3)


def real_stats(data_dir: str | None = None, k: int = PR_K) -> RealStats:
    """Return the real-side statistics: from memory, else from disk, else computed and stored."""
    key = _key("real", data=_data_digests("t10k-images-idx3-ubyte"), k=k)
    if key in _MEMORY:
        return _MEMORY[key]
    path = _cache_path("real-stats", key)
    value = _load_cache(path, key)
    stats = None
    if value is not None:
        try:
            stats = RealStats(**{name: value[name] for name in ("features", "fid_sum", "fid_cov_sum", "radii")})
            n, dim = stats.features.shape
            if stats.radii.shape != (n,) or stats.fid_cov_sum.shape != (dim, dim) or stats.fid_sum.shape != (dim,):
                stats = None
        except (KeyError, TypeError, AttributeError, ValueError):
            stats = None
    if stats is None:
        # Computed on the CPU whatever the evaluation device, so that the real side is the
        # same bits on every machine.
        stats = compute_real_stats(load_classifier("cpu"), data_dir, k)
        _save_cache(path, key, stats.to_dict())
    _MEMORY[key] = stats
    return stats


# --- the evaluator -----------------------------------------------------------------------------


class Evaluator:
    """Score generated images against the MNIST test split with a fixed, recorded protocol."""

    def __init__(
        self,
        device: torch.device | str,
        n_samples: int = N_SAMPLES,
        eval_seed: int = EVAL_SEED,
        data_dir: str | None = None,
        backbone: str = "classifier",
        inception_weights: str | None = None,
    ):
        """Load the classifier and the cached real statistics.

        Args:
            backbone: ``"classifier"``, or ``"inception"`` to add ``fid_inception`` (the
                classic FID, needs ``inception_weights`` and torch-fidelity; slow on CPU).

        Raises:
            UsageError: ``n_samples`` too small, an unknown backbone, or the Inception FID
                asked for without its weights or torch-fidelity.
            BenchError: the classifier weights do not match their SHA-256.
        """
        if n_samples <= PR_K:
            raise UsageError(f"the evaluation needs more than {PR_K} samples, got {n_samples}")
        if backbone not in ("classifier", "inception"):
            raise UsageError(f"unknown FID backbone {backbone!r}; choose from: classifier, inception")
        self.device = torch.device(device)
        self.n_samples = n_samples
        self.eval_seed = eval_seed
        self.data_dir = data_dir
        self.backbone = backbone
        self._inception = _InceptionFID(inception_weights, self.device) if backbone == "inception" else None
        self.classifier = load_classifier(self.device).to(memory_format=torch.channels_last)
        self.real = real_stats(data_dir)
        self._real_features = self.real.features.to(self.device)
        self._real_radii = self.real.radii.to(self.device)
        dim = self.real.features.shape[1]

        # FID and KID run on the CPU: their states are small, FID's sums are float64 (which
        # some accelerators lack), and the eigenvalues of a 128x128 matrix gain nothing there.
        self._fid = _fid_metric(dim)
        self._fid.real_features_sum = self.real.fid_sum.clone()
        self._fid.real_features_cov_sum = self.real.fid_cov_sum.clone()
        self._fid.real_features_num_samples = torch.tensor(len(self.real.features))
        # KID's kernel is (gamma * x.y + 1) ** 3. torchmetrics' default gamma, 1/dim, suits
        # Inception features (x.y/dim well below 1); ours are larger (x.y/dim about 5), and
        # the cube then makes the subset-to-subset spread swamp the signal. gamma = 1 /
        # E|f_real|^2 brings x.y * gamma to order one; it is fixed by the real side.
        self.kid_gamma = 1.0 / float(self.real.features.double().square().sum(1).mean())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            self._kid = KernelInceptionDistance(
                feature=_Precomputed(dim),
                subsets=KID_SUBSETS,
                subset_size=KID_SUBSET_SIZE,
                gamma=self.kid_gamma,
                reset_real_features=False,
            )
        self._kid.update(self.real.features, real=True)

    def protocol(self, n_generated: int | None = None) -> dict[str, Any]:
        """Describe how the numbers are made; stored with every result."""
        n = self.n_samples if n_generated is None else n_generated
        return {
            "version": PROTOCOL_VERSION,
            "n_generated": n,
            "n_real": len(self.real.features),
            "real_split": "test",
            "eval_seed": self.eval_seed,
            "latents": f"gan.sample_latent(n, torch.Generator().manual_seed(eval_seed)) in chunks of {BATCH}",
            "feature_network": classifier.NAME,
            "feature_network_sha256": classifier.WEIGHTS_SHA256,
            "feature_dim": self.real.features.shape[1],
            "resize": RESIZE_RULE,
            "pr_k": PR_K,
            "kid_subsets": KID_SUBSETS,
            "kid_subset_size": min(KID_SUBSET_SIZE, n, len(self.real.features)),
            "kid_subset_seed": self.eval_seed,
            "kid_kernel": "polynomial, degree 3, coef 1",
            "kid_gamma": self.kid_gamma,
            "fid_backbone": self.backbone,
            "torchmetrics": torchmetrics.__version__,
        }

    @torch.no_grad()
    def evaluate(self, gan: Any) -> dict[str, Any]:
        """Generate ``n_samples`` images from the fixed evaluation latents and score them.

        The latents come from a generator seeded with ``eval_seed``, so the GAN's own RNG
        (and the global one) is left as it was.
        """
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(self.eval_seed)
        feats, logits, kept = [], [], []
        for i in range(0, self.n_samples, BATCH):
            images = gan.generate(gan.sample_latent(min(BATCH, self.n_samples - i), gen))
            f, lg = self._classify(images)
            feats.append(f)
            logits.append(lg)
            if self._inception is not None:
                kept.append(images.cpu())
        extra = {}
        if self._inception is not None:
            extra["fid_inception"] = self._inception.compute(torch.cat(kept), self.data_dir)
        return self._score(torch.cat(feats), torch.cat(logits), start, extra)

    def evaluate_images(self, images: Tensor) -> dict[str, Any]:
        """Score given images in [-1, 1], shape (N, 1, S, S), like :meth:`evaluate`."""
        return self._evaluate_images(images, with_inception=True)

    @torch.no_grad()
    def _evaluate_images(self, images: Tensor, with_inception: bool) -> dict[str, Any]:
        start = time.perf_counter()
        if len(images) <= PR_K:
            raise UsageError(f"the evaluation needs more than {PR_K} images, got {len(images)}")
        feats, logits = [], []
        for i in range(0, len(images), BATCH):
            f, lg = self._classify(images[i : i + BATCH])
            feats.append(f)
            logits.append(lg)
        extra = {}
        if with_inception and self._inception is not None:
            extra["fid_inception"] = self._inception.compute(images.cpu(), self.data_dir)
        return self._score(torch.cat(feats), torch.cat(logits), start, extra)

    def reference_points(self) -> dict[str, dict[str, Any]]:
        """Return the metrics of MNIST train images and of uniform noise, both against the test split.

        ``train_vs_test`` scores the first ``n_samples`` training images of the shuffle
        that ``--train-subset`` uses; ``noise_vs_test`` scores ``n_samples`` images of
        uniform noise in [-1, 1] drawn from ``eval_seed``. Cached like the real statistics.
        """
        key = _key(
            "reference",
            data=_data_digests("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
            protocol={k: v for k, v in self.protocol().items() if k not in ("fid_backbone", "torchmetrics")},
            subset_seed=SUBSET_SEED,
            torchmetrics=torchmetrics.__version__,
        )
        if key in _MEMORY:
            return _MEMORY[key]
        path = _cache_path("reference", key)
        value = _load_cache(path, key)
        if value is None or set(value) != {"train_vs_test", "noise_vs_test"}:
            train, _ = load_mnist("train", self.data_dir)
            if self.n_samples > len(train):
                raise UsageError(f"reference points need at most {len(train)} samples, got {self.n_samples}")
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SUBSET_SEED))
            train = to_model_range(train[order[: self.n_samples]], IMAGE_SIZE)
            noise = torch.rand(self.n_samples, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(self.eval_seed))
            value = {}
            for name, images in (("train_vs_test", train), ("noise_vs_test", noise.mul_(2).sub_(1))):
                scores = self._evaluate_images(images, with_inception=False)
                scores.pop("eval_s")  # a timing would go stale in the cache
                value[name] = scores
            _save_cache(path, key, value)
        _MEMORY[key] = value
        return value

    def _classify(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Resize to 28x28 if needed and return the classifier's (features, logits)."""
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 1:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise UsageError(f"expected images of shape (N, 1, S, S) to evaluate, got {got}")
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.classifier(x.contiguous(memory_format=torch.channels_last))

    def _score(self, feats: Tensor, logits: Tensor, start: float, extra: dict[str, Any]) -> dict[str, Any]:
        """Turn the generated side's features and logits into every metric."""
        n = len(feats)
        feats_cpu = feats.float().cpu()

        self._fid.reset()  # keeps the real side: reset_real_features=False
        self._fid.update(feats_cpu, real=False)
        fid = float(self._fid.compute())

        self._kid.reset()
        self._kid.update(feats_cpu, real=False)
        self._kid.subset_size = min(KID_SUBSET_SIZE, n, len(self.real.features))
        # KernelInceptionDistance.compute draws its subsets with the global torch.randperm.
        # fork_rng restores the caller's CPU RNG afterwards, and seeding only the CPU
        # generator inside it makes the subsets the same at every evaluation.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.eval_seed)
            kid_mean, kid_std = self._kid.compute()

        precision, recall = precision_recall(self._real_features, feats, PR_K, real_radii=self._real_radii)
        shares, covered, mode_kl = mode_coverage(logits)
        result = {
            "fid": fid,
            "kid": float(kid_mean),
            "kid_std": float(kid_std),
            "precision": precision,
            "recall": recall,
            "classifier_score": classifier_score(logits),
            "modes_covered": covered,
            "mode_shares": shares,
            "mode_kl": mode_kl,
            **extra,
        }
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        result["eval_s"] = time.perf_counter() - start
        result["protocol"] = self.protocol(n)
        return result


# --- the classic FID, on request -------------------------------------------------------------


def _inception_input(images: Tensor) -> Tensor:
    """Turn one-channel images in [-1, 1] into three-channel floats in [0, 1] (torchmetrics resizes)."""
    return images.float().add(1).div_(2).clamp_(0, 1).expand(-1, 3, -1, -1)


class _InceptionFID:
    """torchmetrics' classic FID (Inception-v3 pool features, 2048) with the real side kept."""

    def __init__(self, weights_path: str | os.PathLike | None, device: torch.device | str = "cpu", batch_size: int = 100):
        if weights_path is None:
            raise UsageError(f"no Inception weights given: {INCEPTION_HELP}")
        if importlib.util.find_spec("torch_fidelity") is None:
            raise UsageError(f"torch-fidelity is not installed: {INCEPTION_HELP}")
        path = Path(weights_path)
        if not path.is_file():
            raise UsageError(f"Inception weights {path} not found: {INCEPTION_HELP}")
        self.metric = FrechetInceptionDistance(
            feature=2048, normalize=True, reset_real_features=False, feature_extractor_weights_path=str(path)
        ).to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._has_real = False

    def _update(self, images: Tensor, real: bool) -> None:
        for i in range(0, len(images), self.batch_size):
            self.metric.update(_inception_input(images[i : i + self.batch_size]).to(self.device), real=real)

    @torch.no_grad()
    def compute(self, images: Tensor, data_dir: str | None = None, real_images: Tensor | None = None) -> float:
        if not self._has_real:
            if real_images is None:
                test, _ = load_mnist("test", data_dir)
                real_images = to_model_range(test, IMAGE_SIZE)
            self._update(real_images, real=True)
            self._has_real = True
        self.metric.reset()
        self._update(images, real=False)
        return float(self.metric.compute())


def inception_fid(
    images: Tensor,
    real_images: Tensor | None = None,
    weights_path: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
) -> float:
    """Return the classic FID (Inception-v3, 2048 features) of images in [-1, 1] against real ones.

    ``real_images`` defaults to the MNIST test split. Nothing is downloaded: the weights
    must be given.

    Raises:
        UsageError: no weights path, the file is missing, or torch-fidelity is not installed.
    """
    return _InceptionFID(weights_path, device).compute(images, real_images=real_images)
