"""What an FID on the suite's scale looks like: samples and the classifier's confidence, run by run.

Used to choose the default --fid-target (results/README.md, "Time to quality"). For every
finished run folder given, it regenerates 1,000 images from the trained generator (fixed
latents), classifies them with the suite's MNIST classifier (the one behind the metrics) and
records the mean top-class probability and the share of images the classifier is at least
90% sure of, beside the run's final FID; it does the same for 1,000 MNIST test images as the
reference. Then it draws every run's final 5x5 sample grid in order of FID, labelled.

The FID target it proposes is the highest final FID below which every run's samples are
recognizably digits: all ten digits among the 1,000, and at least half of them classified
with 90% confidence or more (MNIST's own test digits: 98%).

Every evaluation a run made (its run.json's evaluations, 10,000 images each) also goes into FID bands:
per band, how many evaluations fell in it, the fewest and the mean digits covered (of 10) and
the mean classifier score (10 at best), which is what "recognizably digits" is read from.

    python results/fid_levels.py RUN_OR_COMPARE_DIR... --out results/README-fid-levels

writes the figure (PNG, PDF) and a JSON of the numbers beside it. The generators are needed once:

    python results/fid_levels.py RUN_OR_COMPARE_DIR... --out results/README-fid-levels --redraw

draws the figure again from that JSON and the run folders' sample grids alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from bench.data import load_mnist, to_model_range  # noqa: E402
from bench.layout import GENERATOR, SAMPLES  # noqa: E402
from bench.metrics.classifier import load_classifier, predict, to_classifier_size  # noqa: E402
from bench.record import Evaluation  # noqa: E402
from bench.registry import default_registry  # noqa: E402
from bench.report.aggregate import load_runs  # noqa: E402
from bench.training.trained import load_trained  # noqa: E402

N_IMAGES = 1000
SURE = 0.9
#: A run's samples are recognizably digits when this share of them is classified at SURE or above...
RECOGNIZABLE_SHARE = 0.5
#: ...and they cover every digit.
DIGITS = 10
#: Upper edges of the FID bands of the evaluations table.
BANDS = (150, 200, 250, 300, 350, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 3000)


def confidence(model: torch.nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Mean top-class probability, the share of images above :data:`SURE`, and how many digits are the top class."""
    _, logits = predict(model, to_classifier_size(images.float()))
    top = logits.softmax(1).max(1)
    return {"mean_top_probability": float(top.values.mean()), "share_sure": float((top.values >= SURE).float().mean()),
            "digits": int(top.indices.unique().numel())}


def bands(evaluations: list[Evaluation]) -> list[dict[str, float]]:
    """``evaluations`` grouped by FID band: count, digits covered and classifier score."""
    evals = [(e.fid, e.modes_covered, e.classifier_score) for e in evaluations if e.fid is not None]
    table = []
    for low, high in zip((0, *BANDS), BANDS, strict=False):
        band = [e for e in evals if low <= e[0] < high]
        if band:
            table.append({"fid_from": low, "fid_to": high, "evaluations": len(band),
                          "fewest_digits": min(e[1] for e in band),
                          "mean_digits": sum(e[1] for e in band) / len(band),
                          "mean_classifier_score": sum(e[2] for e in band) / len(band)})
    return table


def recognizable(row: dict) -> bool:
    """Whether a run's samples are recognizably digits (see the module docstring)."""
    return row["digits"] == DIGITS and row["share_sure"] >= RECOGNIZABLE_SHARE


def proposed_target(rows: list[dict]) -> float | None:
    """The highest final FID below which every run (``rows`` in order of FID) is recognizable."""
    target = None
    for row in rows:
        if not recognizable(row):
            break
        target = row["fid"]
    return target


def run_folders(paths: list[str]) -> list[Path]:
    """The run folders under ``paths`` whose trained generator is there to sample from."""
    return [run.path for run in load_runs(paths) if (run.path / GENERATOR).is_file()]


def measure(paths: list[str]) -> dict:
    """The numbers of the JSON: the test images' reference, every run's row in order of FID, the bands, the target."""
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    model = load_classifier(cpu)
    test, _ = load_mnist("test")
    reference = confidence(model, to_model_range(test[:N_IMAGES], 28))
    rows, evaluations = [], []
    for folder in run_folders(paths):
        record, gan = load_trained(folder, default_registry().load, cpu)
        if record.metrics is None:
            continue
        evaluations += record.evaluations
        z = gan.sample_latent(N_IMAGES, torch.Generator().manual_seed(0))
        rows.append({"run": folder.name, "arch": record.arch, "seed": record.seed, "fid": record.metrics.fid,
                     "steps": record.steps, **confidence(model, gan.generate(z))})
    rows.sort(key=lambda r: r["fid"])
    return {"reference_test_images": reference, "runs": rows, "fid_bands": bands(evaluations),
            "proposed_target": proposed_target(rows)}


def draw(levels: dict, samples: dict[str, Path], out: Path) -> None:
    """Every run's final sample grid (``samples``: by run folder name) in order of FID, labelled, as PNG and PDF."""
    rows, reference = levels["runs"], levels["reference_test_images"]
    cols = 6
    lines = (len(rows) + cols - 1) // cols
    # constrained layout keeps every panel's two-line title clear of the panel above it, and the suptitle above all
    fig, axes = plt.subplots(lines, cols, figsize=(2.0 * cols, 2.5 * lines + 0.6), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, rows, strict=False):
        ax.imshow(matplotlib.image.imread(samples[r["run"]]), cmap="gray")
        ax.set_title(f"{r['arch']} s{r['seed']}: FID {r['fid']:.0f}\n{r['digits']} digits, {r['share_sure']:.0%} sure, "
                     f"conf. {r['mean_top_probability']:.2f}", fontsize=8)
    fig.suptitle(f"Final samples in order of FID.\nOver {N_IMAGES:,} generated images: the digits the classifier "
                 f"sees, the share it is {SURE:.0%} sure of, its mean top-class probability (MNIST test images: "
                 f"10 digits, {reference['share_sure']:.0%} sure, conf. {reference['mean_top_probability']:.3f})",
                 fontsize=9)
    for ext in (".png", ".pdf"):
        fig.savefig(out.with_suffix(ext), dpi=150, metadata={"CreationDate": None} if ext == ".pdf" else None)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", required=True, help="path without extension for the figure and the JSON")
    parser.add_argument("--redraw", action="store_true", help="draw the figure again from the JSON at --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.redraw:
        levels = json.loads(out.with_suffix(".json").read_text())
    else:
        levels = measure(args.paths)
        out.with_suffix(".json").write_text(json.dumps(levels, indent=1))
    draw(levels, {run.path.name: run.path / SAMPLES for run in load_runs(args.paths)}, out)
    print(f"proposed FID target: {levels['proposed_target']}")
    print("| FID | evaluations | fewest digits | mean digits | mean classifier score |\n|---|---|---|---|---|")
    for b in levels["fid_bands"]:
        print(f"| {b['fid_from']}-{b['fid_to']} | {b['evaluations']} | {b['fewest_digits']} | {b['mean_digits']:.1f} "
              f"| {b['mean_classifier_score']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
