"""``bench eval``: rebuild a run's generator and score it again."""

from __future__ import annotations

import argparse

from bench import tables
from bench.cli.options import add_eval_scale, add_fid_backbone_options, parse_int
from bench.config import MAX_EVAL_SAMPLES, check_eval_samples, check_eval_scale
from bench.device import resolve_device
from bench.metrics.classifier import IMAGE_SIZE
from bench.metrics.evaluator import Evaluator
from bench.registry import default_registry
from bench.schema import to_plain
from bench.storage import check_writable, write_json
from bench.training.trained import load_trained

DESCRIPTION = "Rebuild a run's generator from run.json and generator.pt (and sampling.pt) and score it."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--eval-samples", type=parse_int, default=10_000, metavar="N",
                   help=f"generated images, 1 to {MAX_EVAL_SAMPLES} (default 10000)")
    add_eval_scale(p, "the scale the run was evaluated at")
    add_fid_backbone_options(p)
    p.add_argument("--out", metavar="FILE", help="also write the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    check_eval_samples(args.eval_samples)
    if args.out:
        check_writable(args.out, "--out")  # before the evaluation, not after it
    device = resolve_device(args.device)
    record, gan = load_trained(args.run_dir, default_registry().load, device)
    side = record.config.image_size or IMAGE_SIZE
    check_eval_scale(args.eval_scale, side, record.arch)
    evaluator = Evaluator(device, n_samples=args.eval_samples, data_dir=record.config.data_dir,
                          backbone=args.fid_backbone, inception_weights=args.inception_weights,
                          image_size=args.eval_scale or record.config.eval_scale or side)
    metrics = evaluator.evaluate(gan)
    references = evaluator.reference_points()
    tables.print_metrics(metrics, references, title=f"{record.arch} ({args.run_dir}): evaluation")
    if args.out:
        write_json(args.out, {"metrics": to_plain(metrics), "references": to_plain(references)})
    return 0
