"""Metrics in the classifier's feature space: sanity points that a broken metric would miss."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import torch
from torch import Tensor, nn

from bench.config import MIN_EVAL_SAMPLES, RunConfig
from bench.contract import GAN
from bench.data import load_mnist, to_model_range, to_scale
from bench.metrics.classifier import to_classifier_size
from bench.errors import UsageError
from bench import scores
from bench.metrics import cache, classifier
from bench.scores import PR_K
from bench.metrics.evaluator import BATCH, EVAL_SEED, EvalProtocol, Evaluator
from bench.record import Evaluation, Scores
from bench.scores import METRIC_NAMES

N_SMALL = 2000


@pytest.fixture(scope="module", autouse=True)
def cache_folder(tmp_path_factory):
    """Keep the disk cache of this module in a temporary folder, starting empty."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        cache.clear_memory_cache()
        yield
    cache.clear_memory_cache()


@pytest.fixture(scope="module")
def evaluator(cache_folder) -> Evaluator:
    return Evaluator("cpu", n_samples=N_SMALL)


@pytest.fixture(scope="module")
def test_images() -> tuple[Tensor, Tensor]:
    images, labels = load_mnist("test")
    return to_model_range(images, 28), labels


@pytest.fixture(scope="module")
def noisy_images(test_images) -> Tensor:
    """1,200 test digits with noise added: a stand-in for a generator's images."""
    images = test_images[0][:1200]
    return (images + 0.5 * torch.randn(images.shape, generator=torch.Generator().manual_seed(5))).clamp(-1, 1)


@pytest.fixture(scope="module")
def generated(evaluator, noisy_images) -> tuple[Tensor, Tensor]:
    """The classifier's features and logits of ``noisy_images``, batched as the evaluator batches."""
    with torch.no_grad():
        return evaluator._classify_all((noisy_images[i : i + BATCH] for i in range(0, 1200, BATCH)), None)


class LinearGAN(GAN):
    """A fixed random linear map from latents to images: cheap, deterministic, any size."""

    def __init__(self, image_size: int, latent_dim: int = 16):
        self.latent_dim = latent_dim
        gen = torch.Generator().manual_seed(0)
        layer = nn.Linear(latent_dim, image_size * image_size)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.5)
            layer.bias.zero_()
        self.generator = nn.Sequential(layer, nn.Tanh(), nn.Unflatten(1, (1, image_size, image_size)))
        self.discriminator = nn.Identity()

    def train_step(self, real, step):  # pragma: no cover - never trained
        raise NotImplementedError


class OneDigitGAN:
    """Duck-typed: returns real test images of a single digit, picked by the latent."""

    latent_dim = 1

    def __init__(self, pool: Tensor):
        self.pool = pool

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(n, 1, generator=generator)

    def generate(self, z: Tensor) -> Tensor:
        return self.pool[(z[:, 0] * len(self.pool)).long().clamp_max(len(self.pool) - 1)]


def untimed(metrics):
    return dataclasses.replace(metrics, eval_s=None)


# --- the pieces -----------------------------------------------------------------------------


def test_precision_recall_of_identical_sets_is_one():
    x = torch.randn(600, 32, generator=torch.Generator().manual_seed(1))
    assert scores.precision_recall(x, x.clone(), block=128) == (1.0, 1.0)


def test_precision_recall_of_disjoint_sets_is_zero():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(2))
    assert scores.precision_recall(x, x + 100) == (0.0, 0.0)


def test_precision_recall_separates_precision_from_recall():
    gen = torch.Generator().manual_seed(3)
    real = torch.randn(2000, 2, generator=gen)
    collapsed = torch.randn(2000, 2, generator=gen) * 0.1  # inside the real mass, covering little of it
    precision, recall = scores.precision_recall(real, collapsed, block=500)
    assert precision > 0.95 and recall < 0.2


def test_knn_radii_match_a_brute_force_computation():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(4))
    d = torch.cdist(x, x)
    expected = d.sort(dim=1).values[:, 3]
    torch.testing.assert_close(scores.knn_radii(x, 3, block=64), expected, rtol=1e-4, atol=1e-4)


def test_classifier_score_and_mode_coverage_limits():
    uniform = torch.zeros(100, 10)
    assert scores.classifier_score(uniform) == pytest.approx(1.0)
    confident = torch.eye(10).repeat(10, 1) * 50
    assert scores.classifier_score(confident) == pytest.approx(10.0, rel=1e-6)
    shares, covered, kl = scores.mode_coverage(confident)
    assert shares == pytest.approx([0.1] * 10) and covered == 10 and kl == pytest.approx(0.0, abs=1e-12)
    shares, covered, kl = scores.mode_coverage(torch.eye(10)[[3] * 99 + [4]])
    assert covered == 2 and shares[3] == pytest.approx(0.99) and 0 < kl < math.log(10)


# --- the update/compute objects -----------------------------------------------------------------


def real_side(evaluator) -> scores.RealSide:
    return scores.RealSide(evaluator.real.features, evaluator.real.radii, torch.device("cpu"), EVAL_SEED)


def all_scores(evaluator) -> list[scores.Score]:
    """A fresh instance of every score, on the evaluator's real side."""
    return [score(real_side(evaluator)) for score in scores.SCORES]


def test_the_evaluator_is_its_scores_updated_once(evaluator, noisy_images, generated):
    features, logits = generated
    values = {}
    for score in all_scores(evaluator):
        score.update(features, logits)
        computed = score.compute()
        assert list(computed) == [m.name for m in score.metrics], type(score).__name__  # what it declares
        for m in score.metrics:
            assert isinstance(computed[m.name], typing.get_origin(m.type) or m.type), m.name
        values.update(computed)
    assert set(values) == {m.name for m in scores.METRICS if not m.optional}
    assert set(METRIC_NAMES) < set(values)
    result = evaluator.evaluate_images(noisy_images)
    assert {name: result.value(name) for name in values} == values


def test_every_metric_is_described_once_and_every_record_holds_it():
    names = [m.name for m in scores.METRICS]
    assert len(names) == len(set(names))
    assert [f.name for f in dataclasses.fields(Scores)] == names
    assert [f.name for f in dataclasses.fields(Evaluation)] == ["step", "train_wall_s", "train_cpu_s",
                                                                *METRIC_NAMES, "eval_s"]
    for m in scores.METRICS:
        assert m.lower_is_better is not None or not m.headline, f"{m.name}: a headline metric says which way is better"
        assert m.spread_of is None or m.spread_of in names
    assert scores.RANKING.lower_is_better and scores.RANKING.headline and scores.RANKING.header


def test_scores_fed_in_two_chunks_equal_one_chunk(evaluator, generated):
    features, logits = generated
    whole, split = all_scores(evaluator), all_scores(evaluator)
    for one, two in zip(whole, split, strict=True):
        one.update(features, logits)
        two.update(features[:700], logits[:700])
        two.update(features[700:], logits[700:])
        a, b = one.compute(), two.compute()
        if isinstance(one, scores.FID):
            # Float64 sums over two products round differently from one; the rest is exact.
            assert a["fid"] == pytest.approx(b["fid"], rel=1e-6)
        else:
            assert a == b, type(one).__name__


def test_reset_clears_the_generated_side_only(evaluator, generated):
    features, logits = generated
    used, fresh = all_scores(evaluator), all_scores(evaluator)
    for score, new in zip(used, fresh, strict=True):
        score.update(features[:600], logits[:600])
        first = score.compute()
        score.reset()
        score.update(features[600:], logits[600:])
        new.update(features[600:], logits[600:])
        assert score.compute() == new.compute(), type(score).__name__
        assert score.compute() != first, type(score).__name__


def test_kid_is_repeatable_and_leaves_the_global_rng_alone(evaluator, generated):
    kid = scores.KID(real_side(evaluator))
    kid.update(*generated)
    rng = torch.get_rng_state()
    first = kid.compute()
    assert torch.equal(torch.get_rng_state(), rng)
    assert kid.compute() == first
    assert kid.metric.subset_size == 1000  # min(1000, 1200 generated, 10,000 real)


# --- the real side ------------------------------------------------------------------------------


def test_cached_real_statistics_equal_a_fresh_computation(evaluator):
    fresh = cache.compute_real_stats(classifier.load_classifier("cpu"))
    cache.clear_memory_cache()
    cached = cache.real_stats()  # from the disk cache written when the evaluator was built
    assert cache.real_stats() is cached  # and from memory after that
    for name, value in fresh.to_dict().items():
        assert torch.equal(value, getattr(cached, name)), name
        assert torch.equal(value, getattr(evaluator.real, name)), name
    assert fresh.features.shape == (10_000, classifier.MNISTClassifier.num_features)


def test_the_real_side_restored_from_the_cache_gives_exactly_the_fresh_fid(evaluator, noisy_images, generated):
    features, logits = generated
    fresh = cache.compute_real_stats(classifier.load_classifier("cpu"))
    cache.clear_memory_cache()
    restored = cache.real_stats()  # from disk
    fids = []
    for real in (fresh, restored):
        fid = scores.FID(scores.RealSide(real.features, real.radii, torch.device("cpu"), EVAL_SEED))
        fid.update(features, logits)
        fids.append(fid.compute()["fid"])
    assert fids[0] == fids[1]
    # The evaluator, built on the cached real side, gives the same number for the same images.
    assert evaluator.evaluate_images(noisy_images).fid == fids[0]


def test_a_corrupt_cache_file_is_recomputed(evaluator):
    files = sorted(cache.cache_dir().glob("real-stats-*.pt"))
    assert len(files) == 1
    files[0].write_bytes(b"not a torch file")
    cache.clear_memory_cache()
    stats = cache.real_stats()
    assert torch.equal(stats.features, evaluator.real.features)
    assert files[0].stat().st_size > 1_000_000  # rewritten


def test_cached_looks_in_memory_then_on_disk_then_computes(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_BENCH_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3)}

    def lookup(decode=dict):
        return cache.cached("test", cache.cache_key("test", n=3), compute, dict, decode)

    value = lookup()
    assert lookup() is value and len(calls) == 1  # memory
    cache.clear_memory_cache()
    assert torch.equal(lookup()["x"], value["x"]) and len(calls) == 1  # disk
    cache.clear_memory_cache()

    def refuse(stored):
        raise ValueError("not what this version stores")

    lookup(decode=refuse)
    assert len(calls) == 2  # an undecodable file is recomputed
    cache.clear_memory_cache()


def test_a_cache_that_cannot_be_written_is_only_a_warning(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GAN_BENCH_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.warns(UserWarning, match="cannot write the metrics cache"):
        value = cache.cached("test", cache.cache_key("test", n=4), lambda: {"x": 1}, dict, dict)
    assert value == {"x": 1}
    cache.clear_memory_cache()


def test_the_test_set_against_itself(evaluator, test_images):
    result = evaluator.evaluate_images(test_images[0])
    assert abs(result.fid) < 1e-3
    assert abs(result.kid) < 1e-3
    assert result.precision == 1.0 and result.recall == 1.0
    assert result.modes_covered == 10 and result.mode_kl < 0.01
    assert 9.5 < result.classifier_score <= 10.0


# --- end to end ---------------------------------------------------------------------------------


def test_reference_points_order_train_far_below_noise(evaluator):
    ref = evaluator.reference_points()
    assert list(ref) == ["train_vs_test", "noise_vs_test"]
    train, noise = ref["train_vs_test"], ref["noise_vs_test"]
    assert train.fid * 20 < noise.fid
    assert train.kid * 20 < noise.kid
    assert train.precision > 0.6 and train.recall > 0.6
    assert noise.precision < 0.1 and noise.recall < 0.1
    assert train.modes_covered == 10 and train.classifier_score > 9
    assert train.protocol["n_generated"] == N_SMALL
    assert train.eval_s is None and noise.eval_s is None  # a timing would go stale in the cache
    assert evaluator.reference_points() is ref  # cached in memory
    cache.clear_memory_cache()
    again = Evaluator("cpu", n_samples=N_SMALL).reference_points()  # from disk
    assert again == ref


def test_one_digit_generator_covers_one_mode(evaluator, test_images):
    images, labels = test_images
    result = evaluator.evaluate(OneDigitGAN(images[labels == 3]))
    assert result.modes_covered == 1
    assert max(result.mode_shares) > 0.98 and result.mode_shares.index(max(result.mode_shares)) == 3
    assert result.mode_kl == pytest.approx(math.log(10), abs=0.1)
    assert result.recall < 0.3 < result.precision


@pytest.mark.parametrize("image_size", [28, 32])
def test_evaluate_a_gan(evaluator, image_size):
    gan = LinearGAN(image_size)
    if image_size != 28:
        evaluator = Evaluator("cpu", n_samples=N_SMALL, image_size=image_size)
    rng = torch.get_rng_state()
    first = evaluator.evaluate(gan)
    assert torch.equal(torch.get_rng_state(), rng), "the evaluation moved the global RNG"
    second = evaluator.evaluate(gan)
    assert untimed(first) == untimed(second), "the same GAN scored differently twice"
    assert all(first.value(name) is not None for name in (*METRIC_NAMES, "kid_std", "mode_shares"))
    assert first.fid_inception is None and first.eval_s > 0
    assert len(first.mode_shares) == 10 and sum(first.mode_shares) == pytest.approx(1.0)
    assert first.fid > 10 * evaluator.reference_points()["train_vs_test"].fid
    assert first.protocol["n_generated"] == N_SMALL


@torch.no_grad()
def test_resize_path_matches_resizing_by_hand(test_images):
    evaluator = Evaluator("cpu", n_samples=N_SMALL, image_size=32)
    images = test_images[0][:500]
    big = nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    expected = nn.functional.interpolate(big, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    features, logits = evaluator._classify(big)
    torch.testing.assert_close(features, evaluator.classifier(expected)[0])
    # The round trip 28 -> 32 -> 28 keeps the digits legible to the classifier.
    assert (logits.argmax(1) == test_images[1][:500]).float().mean() > 0.97


def test_the_full_protocol(test_images):
    """One evaluation exactly as the runner does it: 10,000 samples, recorded protocol."""
    evaluator = Evaluator("cpu")
    result = evaluator.evaluate(LinearGAN(28))
    protocol = result.protocol
    # Stored in every run.json and compared across runs: the keys and their order are fixed.
    assert list(protocol) == [
        "version", "n_generated", "n_real", "real_split", "eval_seed", "latents", "feature_network",
        "feature_network_sha256", "feature_dim", "resize", "pr_k", "kid_subsets", "kid_subset_size",
        "kid_subset_seed", "kid_kernel", "kid_gamma", "fid_backbone", "torchmetrics",
    ]
    assert protocol["n_generated"] == protocol["n_real"] == 10_000
    assert protocol["eval_seed"] == EVAL_SEED and protocol["real_split"] == "test"
    assert protocol["feature_network_sha256"] == classifier.WEIGHTS_SHA256
    assert (protocol["pr_k"], protocol["kid_subsets"], protocol["kid_subset_size"]) == (3, scores.KID_SUBSETS, 1000)
    assert result.eval_s > 0 and math.isfinite(result.fid)


def test_the_protocol_follows_the_number_of_generated_images(evaluator):
    assert evaluator.protocol(N_SMALL) == evaluator.protocol()
    small = evaluator.protocol(500)
    assert (small["n_generated"], small["kid_subset_size"]) == (500, 500)
    assert {k: v for k, v in small.items() if k not in ("n_generated", "kid_subset_size")} == {
        k: v for k, v in evaluator.protocol().items() if k not in ("n_generated", "kid_subset_size")}
    spec = EvalProtocol(n_generated=20_000, n_real=10_000, eval_seed=1, feature_dim=128, kid_subset_seed=1,
                        kid_gamma=0.5, fid_backbone="classifier")
    assert spec.kid_subset_size == 1000 and spec.generating(10).kid_subset_size == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n_generated = 3


def test_evaluator_rejects_bad_input(evaluator):
    with pytest.raises(UsageError):
        Evaluator("cpu", n_samples=3)
    with pytest.raises(UsageError, match="choose from"):
        Evaluator("cpu", backbone="vgg")
    with pytest.raises(UsageError):
        evaluator.evaluate_images(torch.zeros(10, 3, 28, 28))
    with pytest.raises(UsageError, match="more than 3 images"):
        evaluator.evaluate_images(torch.zeros(3, 1, 28, 28))


# --- the Inception FID: only its refusals can be tested offline ----------------------------------


def test_inception_fid_without_weights_says_where_to_get_them():
    with pytest.raises(UsageError, match="inception.*nothing is downloaded") as info:
        Evaluator("cpu", n_samples=N_SMALL, backbone="inception")
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match=r"gan-bench\[inception\]"):
        Evaluator("cpu", n_samples=N_SMALL, backbone="inception")


def test_inception_fid_with_a_missing_file_or_package(tmp_path):
    # torch-fidelity is not a dependency: either it is missing or the file is, both refused.
    with pytest.raises(UsageError, match="torch-fidelity|not found"):
        Evaluator("cpu", n_samples=N_SMALL, backbone="inception", inception_weights=str(tmp_path / "absent.pth"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluation_on_cuda_matches_the_cpu(evaluator):
    gan = LinearGAN(32)
    on_cpu = evaluator.evaluate(gan)
    gan.generator.to("cuda")
    cuda_rng = torch.cuda.get_rng_state()
    on_gpu = Evaluator("cuda", n_samples=N_SMALL).evaluate(gan)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert on_gpu.fid == pytest.approx(on_cpu.fid, rel=1e-3)
    assert on_gpu.kid == pytest.approx(on_cpu.kid, rel=1e-2, abs=1e-4)
    for key in ("precision", "recall", "classifier_score", "mode_kl"):
        assert on_gpu.value(key) == pytest.approx(on_cpu.value(key), abs=0.01), key
    assert on_gpu.mode_shares == pytest.approx(on_cpu.mode_shares, abs=0.01)


def test_a_32x32_architecture_is_measured_against_real_digits_that_went_its_way():
    """Real digits upsampled to 32x32 as the 32x32 architectures' data is, then resized back, score FID 200
    against the original test digits; against test digits that went the same way they score as low as at 28x28."""
    from bench.data import load_mnist, to_model_range

    at_32 = Evaluator("cpu", n_samples=N_SMALL, image_size=32)
    assert at_32.protocol()["real_image_size"] == 32 and "real_image_size" not in Evaluator("cpu", N_SMALL).protocol()
    train, _ = load_mnist("train")
    digits = to_model_range(train[torch.randperm(len(train), generator=torch.Generator().manual_seed(3))[:N_SMALL]], 32)
    fair = at_32.evaluate_images(digits).fid
    at_28 = Evaluator("cpu", n_samples=N_SMALL)
    unfair = at_28.evaluate_images(to_classifier_size(digits)).fid  # the round trip, scored on the 28 scale
    reference = at_32.reference_points()["train_vs_test"].fid
    assert fair < 2 * reference + 5 < unfair / 5
    with pytest.raises(UsageError, match="images of 32x32 cannot be scored at the 28x28 evaluation scale"):
        at_28.evaluate_images(digits)


def test_a_28x28_generator_at_the_32x32_scale_is_brought_there_as_the_training_data_are(test_images):
    """--eval-scale 32: generated 28x28 images go 28 -> 32 exactly as real digits do, so MNIST's own digits
    given as 28x28 images score as the same digits given at 32x32."""
    train, _ = load_mnist("train")
    digits = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(3))[:N_SMALL]]
    small, big = to_model_range(digits, 28), to_model_range(digits, 32)
    assert torch.equal(to_scale(small, 32), big) and to_scale(big, 32) is big
    at_32 = Evaluator("cpu", n_samples=N_SMALL, image_size=32)
    assert at_32.evaluate_images(small).fid == at_32.evaluate_images(big).fid


def test_one_lower_bound_for_the_evaluation_samples_where_they_are_given_and_where_they_are_used():
    assert MIN_EVAL_SAMPLES == PR_K + 1  # precision and recall need k neighbours besides the image itself
    for n in (0, 3):
        with pytest.raises(UsageError, match=f"--eval-samples must be at least 4 .*, got {n}"):
            Evaluator("cpu", n_samples=n)
        with pytest.raises(UsageError, match=f"--eval-samples must be at least 4 .*, got {n}"):
            RunConfig("vanilla", eval_samples=n).validate()
