"""``bench classifier train|check``: make or verify the MNIST classifier behind the metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench import console
from bench.cli.options import Parser, parse_int
from bench.metrics import classifier as C


DESCRIPTION = "Train the MNIST classifier whose features the metrics use, or check the shipped weights."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``classifier train`` and ``classifier check``; both run :func:`run`."""
    sub = parser.add_subparsers(dest="classifier_command", metavar="{train,check}", required=True,
                                parser_class=Parser)

    train = sub.add_parser("train", help="train the classifier and write its weights (a few minutes on CPU)")
    train.add_argument("--seed", type=parse_int, default=C.DEFAULT_SEED,
                       help=f"training seed (default {C.DEFAULT_SEED})")
    train.add_argument("--epochs", type=parse_int, default=C.DEFAULT_EPOCHS,
                       help=f"epochs (default {C.DEFAULT_EPOCHS})")
    train.add_argument("--out", default=None, help=f"where to write the weights (default {C.WEIGHTS_PATH})")
    train.add_argument("--device", default="cpu",
                       help="torch device (default cpu: the shipped weights were trained there)")

    check = sub.add_parser("check", help="verify the shipped weights' SHA-256 and test accuracy")
    check.add_argument("--device", default="cpu", help="torch device (default cpu)")


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``classifier`` subcommand; return the exit status."""
    return {"train": _train, "check": _check}[args.classifier_command](args)


def _train(args: argparse.Namespace) -> int:
    """Train, save the weights atomically, report their hash and test accuracy."""
    device = torch.device(args.device or "cpu")
    path = Path(args.out or C.WEIGHTS_PATH)
    console.err.print(f"training the MNIST classifier on {device}: seed {args.seed}, {args.epochs} epochs")
    result = C.train_classifier(args.seed, args.epochs, device, log=console.err.print)
    digest = C.save_weights(result.model, path)
    size_kb = path.stat().st_size / 1024
    console.out.print(f"test accuracy {result.accuracy:.2%} after {result.train_s:.0f} s of training", soft_wrap=True)
    console.out.print(f"wrote {path} ({size_kb:.0f} KiB), SHA-256 {digest}", soft_wrap=True)
    if result.accuracy < C.MIN_ACCURACY:
        console.warn(f"test accuracy {result.accuracy:.2%} is below {C.MIN_ACCURACY:.0%}")
    if digest != C.WEIGHTS_SHA256:
        console.warn(
            "these weights differ from the shipped ones (another seed, epoch count, device, CPU or torch "
            f'build); to use them, set WEIGHTS_SHA256 = "{digest}" in {C.__file__}'
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    """Verify the shipped weights' hash and their test accuracy."""
    device = torch.device(args.device or "cpu")
    model = C.load_classifier(device)
    console.out.print(f"{C.WEIGHTS_PATH}: SHA-256 {C.WEIGHTS_SHA256}, as expected", soft_wrap=True)
    accuracy = C.test_accuracy(model, device)
    if accuracy < C.MIN_ACCURACY:
        console.error(f"test accuracy {accuracy:.2%} is below {C.MIN_ACCURACY:.0%}")
        return 1
    console.out.print(f"test accuracy {accuracy:.2%} (at least {C.MIN_ACCURACY:.0%} required): ok")
    return 0
