"""Does the 32x32 evaluation scale keep the 28x28 scale's ranking? FIDs of the same generators on both.

One leaderboard for all six built-ins needs one scale: 28x28 architectures' images are brought
to 32x32 (bilinear, rounded to 8 bits, as the 32x32 architectures' training data are) and
scored against real digits that went the same way. That is only fair if it ranks generators as
the 28x28 scale does. This trains generators of the four 28x28 built-ins at several budgets
(seed 0, through ``bench run``), re-scores each with ``bench eval --eval-scale 28`` and ``32``
(10,000 images each, the published protocol), and reports the Spearman rank correlation of the
two columns and the ratio of the two FIDs.

    python results/scale_agreement.py --work /tmp/scale-runs --out results/scale-agreement.json

The run folders stay in ``--work`` (they are not committed); the JSON holds every number.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from scipy.stats import spearmanr

from bench.cli import main

ARCHS = ("vanilla", "lsgan", "wgan", "wgan-gp")
BUDGETS = (300, 1000, 3000)
SCALES = (28, 32)


def train(work: Path, arch: str, steps: int) -> Path:
    """Train ``arch`` for ``steps`` batches into its own folder under ``work`` (reused if it is there)."""
    out = work / f"{arch}-{steps}"
    done = sorted(out.glob("*/generator.pt"))
    if not done:
        status = main(["run", "--arch", arch, "--steps", str(steps), "--seed", "0", "--no-eval",
                       "--sample-every", "0", "--out", str(out)])
        assert status == 0, f"{arch} {steps}: exit {status}"
        done = sorted(out.glob("*/generator.pt"))
    return done[0].parent


def fid(run_dir: Path, scale: int, samples: int) -> float:
    """``bench eval --eval-scale scale``'s FID of the run in ``run_dir``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.json"
        status = main(["eval", str(run_dir), "--eval-scale", str(scale), "--eval-samples", str(samples),
                       "--device", "cpu", "--out", str(out)])
        assert status == 0, f"{run_dir} at {scale}: exit {status}"
        return json.loads(out.read_text())["metrics"]["fid"]


def agreement(rows: list[dict]) -> dict:
    """Spearman's rho of the two scales' FIDs and the range of their ratio."""
    a, b = [r["fid_28"] for r in rows], [r["fid_32"] for r in rows]
    rho = spearmanr(a, b).statistic
    ratios = [y / x for x, y in zip(a, b, strict=True)]
    return {"generators": len(rows), "spearman": float(rho), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main_script() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the trained runs (reused)")
    parser.add_argument("--out", type=Path, required=True, help="JSON of every generator's FIDs and the agreement")
    parser.add_argument("--eval-samples", type=int, default=10_000)
    args = parser.parse_args()
    rows = []
    for arch in ARCHS:
        for steps in BUDGETS:
            run_dir = train(args.work, arch, steps)
            row = {"arch": arch, "steps": steps, **{f"fid_{s}": fid(run_dir, s, args.eval_samples) for s in SCALES}}
            rows.append(row)
            print(f"{arch:8} {steps:5} steps: FID {row['fid_28']:8.1f} at 28x28, {row['fid_32']:8.1f} at 32x32",
                  flush=True)
    summary = agreement(rows)
    print(f"Spearman {summary['spearman']:.3f} over {summary['generators']} generators; FID at 32 / at 28: "
          f"{summary['ratio_min']:.2f}-{summary['ratio_max']:.2f}")
    args.out.write_text(json.dumps({"eval_samples": args.eval_samples, "rows": rows, **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main_script()
