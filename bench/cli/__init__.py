"""``python -m bench``: the command line. Errors are caught here, once, and printed as one line."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import traceback
from typing import NoReturn, Sequence

from bench import console
from bench.errors import BenchError, UsageError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        console.error(f"{message} (see: {self.prog} --help)")
        raise SystemExit(2)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """Parse ``90s``, ``10m``, ``1h``, ``1h30m`` or plain seconds into seconds."""
    m = _DURATION.fullmatch(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"invalid time budget {text!r}; use e.g. 90s, 10m, 1h or 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def parse_every(text: str) -> tuple[str, float]:
    """``500`` (batches) or ``30s`` / ``2m`` (training time)."""
    if text.strip().lstrip("-").isdigit():
        return "steps", int(text)
    return "seconds", parse_duration(text)


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def add_training_options(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """The options every training command shares (run, compare, sweep)."""
    budget = p.add_argument_group("budget (exactly one; default --epochs 5)")
    budget.add_argument("--epochs", type=parse_int, help="passes over the training set")
    budget.add_argument("--steps", type=parse_int, help="training batches")
    budget.add_argument("--time-budget", type=parse_duration, metavar="DURATION",
                        help="wall-clock training time, e.g. 90s, 10m, 1h; stops at the first batch boundary after it")
    p.add_argument("--batch-size", type=parse_int, help="default: the architecture's (64 for the study's)")
    if seed:
        p.add_argument("--seed", type=parse_int, default=0, help="training seed; the same seed gives the same run on CPU (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--precision", default="fp32", help="fp32 (default) or bf16 (autocast, fp32 master weights)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="on CUDA, replay each training step as one CUDA graph (architectures that declare graph_safe)")
    p.add_argument("--threads", type=parse_int, metavar="N",
                   help="CPU threads for torch (default: torch's choice, one per core); 1 is faster on a busy machine")
    p.add_argument("--out", default="results/runs", help="folder for run folders (default results/runs)")
    p.add_argument("--sample-every", type=parse_int, default=400, metavar="N", help="log a sample grid every N batches (default 400, 0 = only at the end)")
    p.add_argument("--log-every", type=parse_int, default=50, metavar="N", help="pull losses to the host every N batches (default 50)")
    p.add_argument("--warmup-steps", type=parse_int, default=10, metavar="N", help="batches left out of the timing statistics (default 10)")
    p.add_argument("--train-subset", type=parse_int, metavar="N", help="train on the first N images of a fixed shuffle")
    p.add_argument("--data-dir", help="a folder with the four MNIST IDX files (default: the copy shipped in the package)")
    ev = p.add_argument_group("evaluation (FID and friends on MNIST classifier features)")
    ev.add_argument("--eval-every", type=parse_every, metavar="N|DURATION",
                    help="also evaluate every N batches, or every DURATION of training time (e.g. 30s); default: only at the end")
    ev.add_argument("--eval-samples", type=parse_int, default=10_000, metavar="N",
                    help="generated images per evaluation (default 10000, the published protocol)")
    ev.add_argument("--no-eval", dest="eval", action="store_false", help="skip evaluation")
    p.add_argument("--checkpoint-every", type=parse_int, metavar="N", help="also write a checkpoint every N batches")
    p.add_argument("--set", dest="hparams", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                   help="override an architecture hyperparameter, e.g. --set lr=1e-4 (repeatable)")


def run_config(args: argparse.Namespace, arch: str):
    """Build a RunConfig from parsed training options."""
    from bench.runner import RunConfig

    every = args.eval_every
    return RunConfig(
        arch=arch, epochs=args.epochs, steps=args.steps, time_budget=args.time_budget,
        batch_size=args.batch_size, seed=getattr(args, "seed", 0), device=args.device, precision=args.precision, threads=args.threads, cuda_graphs=args.cuda_graphs, out=args.out,
        sample_every=args.sample_every, log_every=args.log_every, warmup_steps=args.warmup_steps,
        train_subset=args.train_subset, data_dir=args.data_dir, eval=args.eval,
        eval_every=int(every[1]) if every and every[0] == "steps" else None,
        eval_every_s=every[1] if every and every[0] == "seconds" else None,
        eval_samples=args.eval_samples, checkpoint_every=args.checkpoint_every, hparams=dict(args.hparams),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from bench.registry import default_registry
    from bench.runner import Run, read_record
    from bench.tables import print_run

    registry = default_registry()
    if args.resume:
        if args.arch:
            raise UsageError("--resume takes the architecture and settings from the run folder; drop --arch")
        if read_record(args.resume)["status"] == "completed":
            console.out.print(f"{args.resume} is already complete; nothing to do")
            return 0
        run = Run.resume(args.resume, registry.load)
    elif not args.arch:
        raise UsageError("--arch NAME is required (see: python -m bench list)")
    else:
        run = Run(run_config(args, args.arch), registry.load(args.arch))
    record = run.train()
    print_run(record, run.dir)
    if run.stop_signal is not None:
        console.err.print(f"interrupted; continue with: python -m bench run --resume {run.dir}")
        return 128 + run.stop_signal
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from bench.metrics import Evaluator
    from bench.registry import default_registry
    from bench.runner import load_trained, resolve_device
    from bench.tables import print_metrics

    device = resolve_device(args.device)
    record, gan = load_trained(args.run_dir, default_registry().load, device)
    evaluator = Evaluator(device, n_samples=args.eval_samples, data_dir=record["config"].get("data_dir"),
                          backbone=args.fid_backbone, inception_weights=args.inception_weights)
    metrics = evaluator.evaluate(gan)
    references = evaluator.reference_points()
    print_metrics(metrics, references, title=f"{record['arch']} ({args.run_dir}): evaluation")
    if args.out:
        from bench.results import write_json

        write_json(args.out, {"metrics": metrics, "references": references})
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench.registry import default_registry
    from bench.tables import print_architectures

    print_architectures(default_registry().load_all())
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="python -m bench", description="Compare GAN architectures on MNIST, fairly and fast.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("run", help="train one architecture", description="Train one architecture on MNIST.")
    p.add_argument("--arch", help="architecture name (see: python -m bench list)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run to its original budget")
    add_training_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="recompute a run's metrics from its generator.pt",
                       description="Rebuild a run's generator from run.json and generator.pt and score it.")
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--eval-samples", type=parse_int, default=10_000, metavar="N", help="generated images (default 10000)")
    p.add_argument("--fid-backbone", default="classifier", choices=["classifier", "inception"],
                   help="inception adds the classic FID (needs --inception-weights)")
    p.add_argument("--inception-weights", metavar="PATH", help="FID Inception-v3 weights (pt_inception-2015-12-05)")
    p.add_argument("--out", metavar="FILE", help="also write the metrics as JSON")
    p.set_defaults(func=cmd_eval)

    from bench.classifier import add_classifier_parser
    from bench.compare import cmd_compare, parse_archs, parse_seeds
    from bench.report import DEFAULT_FID_TARGET, _positive_float, add_report_parser

    p = sub.add_parser("compare", help="run several architectures and seeds under one protocol",
                       description="Run every (architecture, seed) pair through the same runner, one after "
                                   "another, under one budget, then print the comparison table.")
    p.add_argument("--arch", type=parse_archs, help="comma-separated architectures, e.g. vanilla,dcgan,wgan")
    p.add_argument("--seeds", type=parse_seeds, default=[0], metavar="N|LIST",
                   help="a count (3 = seeds 0,1,2) or a list (0,5,7); default 1")
    p.add_argument("--fid-target", type=_positive_float, default=DEFAULT_FID_TARGET, metavar="FID",
                   help=f"FID for time-to-quality (default {DEFAULT_FID_TARGET:g})")
    p.add_argument("--resume", metavar="COMPARE_DIR", help="continue a comparison: skip finished runs, resume the interrupted one")
    add_training_options(p, seed=False)
    p.set_defaults(func=cmd_compare)

    from bench.cli import perf

    add_classifier_parser(sub)
    add_report_parser(sub)
    perf.add_parser(sub)
    from bench.sweep import add_sweep_parser; add_sweep_parser(sub)

    p = sub.add_parser("list", help="show the registered architectures")
    p.set_defaults(func=cmd_list)
    return parser


def _crash_log(exc: BaseException) -> str:
    fd, path = tempfile.mkstemp(prefix="gan-bench-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"argv: {sys.argv}\n")
        traceback.print_exception(exc, file=fh)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        if exc.__cause__ is not None:  # a plugin's own error: keep its traceback for its author
            console.error(f"{exc} (traceback in {_crash_log(exc)})")
        else:
            console.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except Exception as exc:  # the last line of defence: short message, traceback in a file
        path = _crash_log(exc)
        console.error(f"internal error: {type(exc).__name__}: {exc} (traceback in {path})")
        return 1

