"""Metrics in the classifier's feature space: sanity points that a broken metric would miss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from bench.metrics import classifier
from bench.metrics import evaluator as M
from bench.contract import GAN
from bench.data import load_mnist, to_model_range
from bench.errors import UsageError

N_SMALL = 2000


@pytest.fixture(scope="module", autouse=True)
def cache_folder(tmp_path_factory):
    """Keep the disk cache of this module in a temporary folder, starting empty."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAN_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        M.clear_memory_cache()
        yield
    M.clear_memory_cache()


@pytest.fixture(scope="module")
def evaluator(cache_folder) -> M.Evaluator:
    return M.Evaluator("cpu", n_samples=N_SMALL)


@pytest.fixture(scope="module")
def test_images() -> tuple[Tensor, Tensor]:
    images, labels = load_mnist("test")
    return to_model_range(images, 28), labels


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


# --- the pieces -----------------------------------------------------------------------------


def test_precision_recall_of_identical_sets_is_one():
    x = torch.randn(600, 32, generator=torch.Generator().manual_seed(1))
    assert M.precision_recall(x, x.clone(), block=128) == (1.0, 1.0)


def test_precision_recall_of_disjoint_sets_is_zero():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(2))
    assert M.precision_recall(x, x + 100) == (0.0, 0.0)


def test_precision_recall_separates_precision_from_recall():
    gen = torch.Generator().manual_seed(3)
    real = torch.randn(2000, 2, generator=gen)
    collapsed = torch.randn(2000, 2, generator=gen) * 0.1  # inside the real mass, covering little of it
    precision, recall = M.precision_recall(real, collapsed, block=500)
    assert precision > 0.95 and recall < 0.2


def test_knn_radii_match_a_brute_force_computation():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(4))
    d = torch.cdist(x, x)
    expected = d.sort(dim=1).values[:, 3]
    torch.testing.assert_close(M.knn_radii(x, 3, block=64), expected, rtol=1e-4, atol=1e-4)


def test_classifier_score_and_mode_coverage_limits():
    uniform = torch.zeros(100, 10)
    assert M.classifier_score(uniform) == pytest.approx(1.0)
    confident = torch.eye(10).repeat(10, 1) * 50
    assert M.classifier_score(confident) == pytest.approx(10.0, rel=1e-6)
    shares, covered, kl = M.mode_coverage(confident)
    assert shares == pytest.approx([0.1] * 10) and covered == 10 and kl == pytest.approx(0.0, abs=1e-12)
    shares, covered, kl = M.mode_coverage(torch.eye(10)[[3] * 99 + [4]])
    assert covered == 2 and shares[3] == pytest.approx(0.99) and 0 < kl < math.log(10)


# --- the real side ------------------------------------------------------------------------------


def test_cached_real_statistics_equal_a_fresh_computation(evaluator):
    fresh = M.compute_real_stats(M.load_classifier("cpu"))
    M.clear_memory_cache()
    cached = M.real_stats()  # from the disk cache written when the evaluator was built
    assert M.real_stats() is cached  # and from memory after that
    for name, value in fresh.to_dict().items():
        assert torch.equal(value, getattr(cached, name)), name
        assert torch.equal(value, getattr(evaluator.real, name)), name
    assert fresh.features.shape == (10_000, M.MNISTClassifier.num_features)


def test_a_corrupt_cache_file_is_recomputed(evaluator):
    files = sorted(M.cache_dir().glob("real-stats-*.pt"))
    assert len(files) == 1
    files[0].write_bytes(b"not a torch file")
    M.clear_memory_cache()
    stats = M.real_stats()
    assert torch.equal(stats.features, evaluator.real.features)
    assert files[0].stat().st_size > 1_000_000  # rewritten


def test_the_test_set_against_itself(evaluator, test_images):
    result = evaluator.evaluate_images(test_images[0])
    assert abs(result["fid"]) < 1e-3
    assert abs(result["kid"]) < 1e-3
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    assert result["modes_covered"] == 10 and result["mode_kl"] < 0.01
    assert 9.5 < result["classifier_score"] <= 10.0


# --- end to end ---------------------------------------------------------------------------------


def test_reference_points_order_train_far_below_noise(evaluator):
    ref = evaluator.reference_points()
    train, noise = ref["train_vs_test"], ref["noise_vs_test"]
    assert train["fid"] * 20 < noise["fid"]
    assert train["kid"] * 20 < noise["kid"]
    assert train["precision"] > 0.6 and train["recall"] > 0.6
    assert noise["precision"] < 0.1 and noise["recall"] < 0.1
    assert train["modes_covered"] == 10 and train["classifier_score"] > 9
    assert train["protocol"]["n_generated"] == N_SMALL
    assert evaluator.reference_points() is ref  # cached in memory
    M.clear_memory_cache()
    again = M.Evaluator("cpu", n_samples=N_SMALL).reference_points()  # from disk
    assert again == ref


def test_one_digit_generator_covers_one_mode(evaluator, test_images):
    images, labels = test_images
    result = evaluator.evaluate(OneDigitGAN(images[labels == 3]))
    assert result["modes_covered"] == 1
    assert max(result["mode_shares"]) > 0.98 and result["mode_shares"].index(max(result["mode_shares"])) == 3
    assert result["mode_kl"] == pytest.approx(math.log(10), abs=0.1)
    assert result["recall"] < 0.3 < result["precision"]


@pytest.mark.parametrize("image_size", [28, 32])
def test_evaluate_a_gan(evaluator, image_size):
    gan = LinearGAN(image_size)
    rng = torch.get_rng_state()
    first = evaluator.evaluate(gan)
    assert torch.equal(torch.get_rng_state(), rng), "the evaluation moved the global RNG"
    second = evaluator.evaluate(gan)
    first.pop("eval_s"), second.pop("eval_s")
    assert first == second, "the same GAN scored differently twice"
    assert set(first) | {"eval_s"} <= set(M.DISPLAY_NAMES) | {"protocol"}
    assert len(first["mode_shares"]) == 10 and sum(first["mode_shares"]) == pytest.approx(1.0)
    assert first["fid"] > 10 * evaluator.reference_points()["train_vs_test"]["fid"]
    assert first["protocol"]["n_generated"] == N_SMALL


@torch.no_grad()
def test_resize_path_matches_resizing_by_hand(evaluator, test_images):
    images = test_images[0][:500]
    big = nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    expected = nn.functional.interpolate(big, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
    features, logits = evaluator._classify(big)
    torch.testing.assert_close(features, evaluator.classifier(expected)[0])
    # The round trip 28 -> 32 -> 28 keeps the digits legible to the classifier.
    assert (logits.argmax(1) == test_images[1][:500]).float().mean() > 0.97


def test_the_full_protocol(test_images):
    """One evaluation exactly as the runner does it: 10,000 samples, recorded protocol."""
    evaluator = M.Evaluator("cpu")
    result = evaluator.evaluate(LinearGAN(32))
    protocol = result["protocol"]
    assert protocol["n_generated"] == protocol["n_real"] == 10_000
    assert protocol["eval_seed"] == M.EVAL_SEED and protocol["real_split"] == "test"
    assert protocol["feature_network_sha256"] == classifier.WEIGHTS_SHA256
    assert (protocol["pr_k"], protocol["kid_subsets"], protocol["kid_subset_size"]) == (3, M.KID_SUBSETS, 1000)
    assert result["eval_s"] > 0 and math.isfinite(result["fid"])


def test_evaluator_rejects_bad_input(evaluator):
    with pytest.raises(UsageError):
        M.Evaluator("cpu", n_samples=3)
    with pytest.raises(UsageError, match="choose from"):
        M.Evaluator("cpu", backbone="vgg")
    with pytest.raises(UsageError):
        evaluator.evaluate_images(torch.zeros(10, 3, 28, 28))


# --- the Inception FID: only its refusals can be tested offline ----------------------------------


def test_inception_fid_without_weights_says_where_to_get_them():
    images = torch.zeros(4, 1, 28, 28)
    with pytest.raises(UsageError, match="inception.*nothing is downloaded") as info:
        M.inception_fid(images, images)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match=r"\.\[inception\]"):
        M.Evaluator("cpu", n_samples=N_SMALL, backbone="inception")


def test_inception_fid_with_a_missing_file_or_package(tmp_path):
    # torch-fidelity is not a dependency: either it is missing or the file is, both refused.
    with pytest.raises(UsageError, match="torch-fidelity|not found"):
        M.inception_fid(torch.zeros(4, 1, 28, 28), weights_path=tmp_path / "absent.pth")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluation_on_cuda_matches_the_cpu(evaluator):
    gan = LinearGAN(32)
    on_cpu = evaluator.evaluate(gan)
    gan.generator.to("cuda")
    cuda_rng = torch.cuda.get_rng_state()
    on_gpu = M.Evaluator("cuda", n_samples=N_SMALL).evaluate(gan)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert on_gpu["fid"] == pytest.approx(on_cpu["fid"], rel=1e-3)
    assert on_gpu["kid"] == pytest.approx(on_cpu["kid"], rel=1e-2, abs=1e-4)
    for key in ("precision", "recall", "classifier_score", "mode_kl"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], abs=0.01), key
    assert on_gpu["mode_shares"] == pytest.approx(on_cpu["mode_shares"], abs=0.01)
