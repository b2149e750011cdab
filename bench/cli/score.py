"""``bench score``: the suite's metrics for images made anywhere, in its MNIST feature space."""

from __future__ import annotations

import argparse

from bench import console, tables
from bench.cli.options import add_eval_scale, add_fid_backbone_options
from bench.config import check_eval_scale
from bench.device import resolve_device
from bench.metrics.evaluator import Evaluator
from bench.metrics.images import RANGES, RECOMMENDED_IMAGES, load_images
from bench.schema import to_plain
from bench.storage import check_writable, write_json

DESCRIPTION = ("Score any generator's images (.npy, .npz or .pt array, or a folder of PNGs) with the suite's "
               "metrics on MNIST-classifier features, beside the reference points at the same number of images.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH",
                   help="a .npy, .npz or .pt array of N x 28 x 28 or N x 1 x 28 x 28 images (or 32 x 32), "
                        "or a folder of PNG files")
    p.add_argument("--key", metavar="NAME", help="the array of an .npz file that holds several")
    p.add_argument("--range", dest="value_range", choices=tuple(RANGES), metavar="LOW,HIGH",
                   help="the images' value range, 0,1 or 0,255 or -1,1 (write --range=-1,1); default: detected "
                        "(any value below 0: -1,1; else any above 1: 0,255; else 0,1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    add_eval_scale(p, "the images' own side")
    add_fid_backbone_options(p)
    p.add_argument("--out", metavar="FILE",
                   help="also write the metrics, reference points, protocol and what was read as JSON")


def run(args: argparse.Namespace) -> int:
    """Check the output file and the images, then score them and the reference points at the same count."""
    check_eval_scale(args.eval_scale)
    if args.out:
        check_writable(args.out, example="scores.json")
    loaded = load_images(args.path, key=args.key, value_range=args.value_range)
    source = loaded.source
    check_eval_scale(args.eval_scale, source.image_size, source.path)
    # The reference points are drawn at the evaluator's n_samples: the count given, so they compare.
    # and the real images come at the given side, as a generator of that side's training data did.
    evaluator = Evaluator(resolve_device(args.device), n_samples=source.count, backbone=args.fid_backbone,
                          inception_weights=args.inception_weights, image_size=args.eval_scale or source.image_size)
    console.out.print(f"images: {source.describe()}", markup=False, highlight=False, soft_wrap=True)
    if source.count < RECOMMENDED_IMAGES:
        console.warn(f"{source.count:,} images: FID and KID are biased at fewer images; compare them only with "
                     f"numbers at the same count (the reference points below are), not with the "
                     f"{RECOMMENDED_IMAGES:,}-image protocol")
    metrics = evaluator.evaluate_images(loaded.images)
    references = evaluator.reference_points()
    tables.print_metrics(metrics, references, title=f"{source.path}: scored", column="these images", noun="images")
    if args.out:
        write_json(args.out, {"input": to_plain(source), "protocol": evaluator.protocol(),
                              "metrics": to_plain(metrics), "references": to_plain(references)})
        console.out.print(f"scores: {args.out}", markup=False, highlight=False, soft_wrap=True)
    return 0
