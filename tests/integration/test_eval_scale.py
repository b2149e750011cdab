"""The 32x32 evaluation scale ranks generators as the 28x28 one does (a small version of
results/scale_agreement.py), so one scale can hold all six architectures."""

from __future__ import annotations

from scipy.stats import spearmanr

from bench.config import RunConfig
from bench.metrics.evaluator import Evaluator
from bench.registry import default_registry
from bench.training.runner import Runner
from bench.training.trained import load_trained

#: Generators of two 28x28 architectures whose 28x28 FIDs lie at least 9% apart at 1,000 images (2269, 1713, 1560
#: and 1060 here). Closer ones can swap: vanilla after 1,500 batches and lsgan after 300 (1560 and 1444 at 28x28)
#: score 893 and 924 at 32x32; results/README.md gives the full experiment's agreement.
GENERATORS = [("vanilla", 30), ("vanilla", 300), ("vanilla", 1500), ("lsgan", 1500)]


def test_the_32x32_scale_keeps_the_28x28_ranking_of_generators(tmp_path):
    registry = default_registry()
    at = {scale: Evaluator("cpu", n_samples=1000, image_size=scale) for scale in (28, 32)}
    fids: dict[int, list[float]] = {28: [], 32: []}
    for arch, steps in GENERATORS:
        cfg = RunConfig(arch=arch, steps=steps, eval=False, sample_every=0, threads=1, out=str(tmp_path))
        runner = Runner(cfg, registry.load(arch))
        runner.train()
        _, gan = load_trained(runner.run.dir, registry.load, "cpu")
        for scale, evaluator in at.items():
            fids[scale].append(evaluator.evaluate(gan).fid)
    assert spearmanr(fids[28], fids[32]).statistic == 1.0, fids
    ratios = [b / a for a, b in zip(fids[28], fids[32], strict=True)]
    assert all(0.3 < r < 1.0 for r in ratios), ratios  # one scale, not the other in disguise
