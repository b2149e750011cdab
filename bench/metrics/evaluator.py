"""Score generated images against the MNIST test split with a fixed, recorded protocol.

One evaluation draws a fixed set of latents, generates the images in chunks and runs the
classifier once over them; each score (:data:`bench.scores.SCORES`) is then updated with the
features and logits and computed. The real side comes from :func:`bench.metrics.cache.real_stats`,
computed once per classifier, and is handed to the scores when the evaluator is built.

A FID computed here is not comparable to a FID computed with Inception-v3 features; it is
reported as "FID (MNIST classifier features)". ``backbone="inception"`` adds the classic one
(:mod:`bench.metrics.inception`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torchmetrics
from torch import Tensor

from bench.config import check_eval_samples
from bench.contract import GAN
from bench.data import to_scale
from bench.errors import UsageError
from bench.metrics import classifier, references
from bench.metrics.cache import PROTOCOL_VERSION, cached, real_stats
from bench.metrics.classifier import IMAGE_SIZE, load_classifier, to_classifier_size
from bench.metrics.inception import InceptionFID
from bench.scores import KID_KERNEL, KID_SUBSETS, PR_K, SCORES, RealSide, Score, Value, kid_gamma, kid_subset_size
from bench.record import Metrics
from bench.stop import StopRequest

#: The latent seed of every evaluation; separate from any training seed.
EVAL_SEED = 1234
N_SAMPLES = 10_000
#: Latents are drawn and images generated and classified in chunks of this size.
BATCH = 1000
LATENTS = f"gan.sample_latent(n, torch.Generator().manual_seed(eval_seed)) in chunks of {BATCH}"
RESIZE_RULE = "non-28x28 images -> 28x28 by F.interpolate(mode='bilinear', antialias=True, align_corners=False)"
BACKBONES = ("classifier", "inception")


@dataclass(frozen=True, kw_only=True)
class EvalProtocol:
    """How the numbers are made; stored with every result (``protocol``) and compared across runs.

    The field order is the key order of the stored dict.
    """

    version: int = PROTOCOL_VERSION
    n_generated: int
    n_real: int
    real_split: str = "test"
    eval_seed: int
    latents: str = LATENTS
    feature_network: str = classifier.NAME
    feature_network_sha256: str = classifier.WEIGHTS_SHA256
    feature_dim: int
    resize: str = RESIZE_RULE
    pr_k: int = PR_K
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = dataclasses.field(init=False)  # follows from n_generated and n_real
    kid_subset_seed: int
    kid_kernel: str = KID_KERNEL
    kid_gamma: float
    fid_backbone: str
    torchmetrics: str = torchmetrics.__version__
    #: The evaluation scale: the side every image is brought to before the classifier resizes it. Real
    #: digits go 28 -> 32 as the 32x32 architectures' training data do, and so do the images of a 28x28
    #: generator scored at 32 (bilinear, rounded to 8 bits), so every architecture compares on one scale.
    #: (The key's name predates generated images being brought there too.)
    real_image_size: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "kid_subset_size", kid_subset_size(self.n_generated, self.n_real))

    def generating(self, n: int) -> EvalProtocol:
        """Return the same protocol for ``n`` generated images."""
        return dataclasses.replace(self, n_generated=n)

    def to_dict(self) -> dict[str, object]:
        """Return the protocol as the plain dict stored in run.json (the classifier's own side is left unsaid,
        so the 28x28 protocol reads as it always has)."""
        protocol = dataclasses.asdict(self)
        if protocol["real_image_size"] == IMAGE_SIZE:
            del protocol["real_image_size"]
        return protocol


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
        image_size: int = IMAGE_SIZE,
    ):
        """Load the classifier and the cached real statistics.

        Args:
            image_size: the evaluation scale (``--eval-scale``; by default an architecture's ``image_size``):
                real images, and generated images of a smaller side, are brought to it first, as the
                32x32 architectures' training data are.
            backbone: ``"classifier"``, or ``"inception"`` to add ``fid_inception`` (the
                classic FID, needs ``inception_weights`` and torch-fidelity; slow on CPU).

        Raises:
            UsageError: ``n_samples`` too small, an unknown backbone, or the Inception FID
                asked for without its weights or torch-fidelity.
            BenchError: the classifier weights do not match their SHA-256.
        """
        check_eval_samples(n_samples)
        if backbone not in BACKBONES:
            raise UsageError(f"unknown FID backbone {backbone!r}; choose from: {', '.join(BACKBONES)}")
        self.device = torch.device(device)
        self.n_samples = n_samples
        self.eval_seed = eval_seed
        self.data_dir = data_dir
        self.backbone = backbone
        self._inception = InceptionFID(inception_weights, self.device, data_dir) if backbone == "inception" else None
        self.classifier = load_classifier(self.device).to(memory_format=torch.channels_last)
        self.image_size = image_size
        self.real = real_stats(data_dir, image_size=image_size)
        real = RealSide(self.real.features, self.real.radii, self.device, eval_seed)
        self.scores: list[Score] = [score(real) for score in SCORES]
        self._protocol = EvalProtocol(
            n_generated=n_samples,
            n_real=len(self.real.features),
            eval_seed=eval_seed,
            feature_dim=self.real.features.shape[1],
            kid_subset_seed=eval_seed,
            kid_gamma=kid_gamma(self.real.features),
            fid_backbone=backbone,
            real_image_size=image_size,
        )

    def protocol(self, n_generated: int | None = None) -> dict[str, object]:
        """Describe how the numbers are made; stored with every result."""
        p = self._protocol if n_generated is None else self._protocol.generating(n_generated)
        return p.to_dict()

    def evaluate(self, gan: GAN, stop: StopRequest | None = None) -> Metrics:
        """Generate ``n_samples`` images from the fixed evaluation latents and score them.

        The latents come from a generator seeded with ``eval_seed``, so the GAN's own RNG
        (and the global one) is left as it was. A ``stop`` request cuts the evaluation short
        between chunks (:class:`bench.stop.Stopped`): nothing of the model changes meanwhile.
        """
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(self.eval_seed)
        n = self.n_samples

        def chunks() -> Iterator[Tensor]:
            for i in range(0, n, BATCH):
                if stop is not None:
                    stop.check()
                yield gan.generate(gan.sample_latent(min(BATCH, n - i), gen))

        return self._score(chunks(), start, inception=True)

    def evaluate_images(self, images: Tensor) -> Metrics:
        """Score given images in [-1, 1], shape (N, 1, S, S), like :meth:`evaluate`."""
        return self._score_images(images, inception=True)

    def reference_points(self) -> dict[str, Metrics]:
        """Return the metrics of MNIST train images and of uniform noise, both against the test split.

        See :func:`bench.metrics.references.reference_images`; cached like the real statistics,
        without an ``eval_s`` (a timing would go stale in the cache).
        """
        key = references.reference_key(self.protocol())
        return cached("reference", key, self._score_references, references.encode, references.decode)

    def _score_references(self) -> dict[str, Metrics]:
        images = references.reference_images(self.n_samples, self.eval_seed, self.data_dir, self.image_size)
        return {name: dataclasses.replace(self._score_images(x, inception=False), eval_s=None)
                for name, x in images.items()}

    def _score_images(self, images: Tensor, inception: bool) -> Metrics:
        start = time.perf_counter()
        if len(images) <= PR_K:
            raise UsageError(f"the evaluation needs more than {PR_K} images, got {len(images)}")
        return self._score((images[i : i + BATCH] for i in range(0, len(images), BATCH)), start, inception)

    @torch.no_grad()
    def _score(self, chunks: Iterable[Tensor], start: float, inception: bool) -> Metrics:
        """Classify the images chunk by chunk, then update and compute every score."""
        fid_inception = self._inception if inception else None
        kept: list[Tensor] | None = [] if fid_inception is not None else None
        features, logits = self._classify_all(chunks, kept)
        values: dict[str, Value] = {}
        for score in self.scores:
            score.reset()
            # One update with all the features: FID's float64 sums over one product are the
            # bits recorded so far, and sums over chunks would round differently.
            score.update(features, logits)
            values.update(score.compute())
        if fid_inception is not None and kept is not None:
            values["fid_inception"] = fid_inception.compute(torch.cat(kept))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return Metrics(**values, eval_s=time.perf_counter() - start, protocol=self.protocol(len(features)))

    def _classify_all(self, chunks: Iterable[Tensor], kept: list[Tensor] | None) -> tuple[Tensor, Tensor]:
        """Return the features and logits of every chunk; keep the images on the CPU if asked."""
        features, logits = [], []
        for images in chunks:
            f, lg = self._classify(images)
            features.append(f)
            logits.append(lg)
            if kept is not None:
                kept.append(images.cpu())
        return torch.cat(features), torch.cat(logits)

    def _classify(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Bring the images to the evaluation scale, then to 28x28, and return the classifier's (features, logits)."""
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 1:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise UsageError(f"expected images of shape (N, 1, S, S) to evaluate, got {got}")
        side = images.shape[-1]
        if side > self.image_size:
            raise UsageError(f"images of {side}x{side} cannot be scored at the {self.image_size}x{self.image_size} "
                             f"evaluation scale; use --eval-scale {side}")
        x = to_classifier_size(to_scale(images.to(self.device, torch.float32), self.image_size))
        return self.classifier(x.contiguous(memory_format=torch.channels_last))

