"""The bottom of the command line: the parser class, option types and the options commands share.

Every command module imports from here and never from another command. No torch: building
the parser stays fast, and a typo is refused before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Any, NoReturn

from bench import console
from bench.config import (
    DEFAULT_FID_TARGETS, MAX_BUDGET, MAX_EVAL_SAMPLES, MAX_SEEDS, MAX_THREADS, SEED_LIMIT, PlanSettings, RunConfig,
    plan_settings_of,
)
from bench.errors import UsageError
from bench.plans.backends import DEFAULT_STACK_SIZE, INSTALL_HINT, RayBackend


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        console.error(f"{message} (see: {self.prog} --help)")
        raise SystemExit(2)


# Option types ----------------------------------------------------------------------------------

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


def parse_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    value = parse_number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


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


def hparam_overrides(assignments: list[tuple[str, str]]) -> dict[str, str]:
    """The ``--set`` assignments as a dict; a key given twice is refused rather than the last silently winning."""
    overrides: dict[str, str] = {}
    for key, value in assignments:
        if key in overrides:
            raise UsageError(f"--set {key} is given twice ({key}={overrides[key]} and {key}={value}); give it once")
        overrides[key] = value
    return overrides


def parse_seeds(text: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,5,7`` means those seeds (at most MAX_SEEDS, each below SEED_LIMIT)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()] if "," in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a count (3) or a list (0,5,7), got {text!r}") from None
    count = seeds if isinstance(seeds, int) else len(seeds)
    if count > MAX_SEEDS:  # checked before the list is made: a plan holds an entry per seed
        raise argparse.ArgumentTypeError(f"--seeds takes at most {MAX_SEEDS:,} seeds, got {count:,}")
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed and no repeats, got {text!r}")
    wrong = next((s for s in seeds if not 0 <= s < SEED_LIMIT), None)
    if wrong is not None:
        raise argparse.ArgumentTypeError(f"--seeds: each seed must be between 0 and {SEED_LIMIT - 1}, got {wrong}")
    return seeds


def parse_archs(text: str) -> list[str]:
    archs = [a.strip() for a in text.split(",") if a.strip()]
    if not archs or len(set(archs)) != len(archs):
        raise argparse.ArgumentTypeError(f"--arch takes a comma-separated list without repeats, got {text!r}")
    return archs


# Shared options --------------------------------------------------------------------------------


def add_training_options(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """The options every training command shares (run, compare, sweep)."""
    budget = p.add_argument_group("budget (exactly one; default --epochs 5)")
    budget.add_argument("--epochs", type=parse_int,
                        help=f"passes over the training set (at most {MAX_BUDGET['epochs']:,})")
    budget.add_argument("--steps", type=parse_int, help=f"training batches (at most {MAX_BUDGET['steps']:,})")
    budget.add_argument("--time-budget", type=parse_duration, metavar="DURATION",
                        help="wall-clock training time, e.g. 90s, 10m, 1h (at most 168h); stops at the first batch "
                             "boundary after it")
    p.add_argument("--batch-size", type=parse_int, help="default: the architecture's (64 for the study's)")
    if seed:
        p.add_argument("--seed", type=parse_int, default=0,
                       help=f"training seed, 0 to {SEED_LIMIT - 1}; the same seed and --threads give the same run "
                            "on the CPU (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--precision", default="fp32", help="fp32 (default) or bf16 (autocast, fp32 master weights)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="on CUDA, replay each training step as one CUDA graph (architectures that declare graph_safe)")
    p.add_argument("--threads", type=parse_int, metavar="N",
                   help=f"CPU threads for torch, 1 to {MAX_THREADS} (default: the usable CPUs that other work leaves "
                        "free, at least 1; recorded in run.json)")
    p.add_argument("--out", default="results/runs", help="folder for run folders (default results/runs)")
    p.add_argument("--sample-every", type=parse_int, default=400, metavar="N",
                   help="log a sample grid every N batches (default 400, 0 = only at the end)")
    p.add_argument("--log-every", type=parse_int, default=50, metavar="N",
                   help="pull losses to the host every N batches (default 50)")
    p.add_argument("--warmup-steps", type=parse_int, default=10, metavar="N",
                   help="batches left out of the timing statistics (default 10)")
    p.add_argument("--train-subset", type=parse_int, metavar="N", help="train on the first N images of a fixed shuffle")
    p.add_argument("--data-dir",
                   help="a folder with the four MNIST IDX files (default: the copy shipped in the package)")
    ev = p.add_argument_group("evaluation (FID and friends on MNIST classifier features)")
    ev.add_argument("--eval-every", type=parse_every, metavar="N|DURATION",
                    help="also evaluate every N batches, or every DURATION of training time (e.g. 30s); "
                         "default: only at the end")
    ev.add_argument("--eval-samples", type=parse_int, default=10_000, metavar="N",
                    help=f"generated images per evaluation, 1 to {MAX_EVAL_SAMPLES} (default 10000, the published "
                         "protocol)")
    ev.add_argument("--no-eval", dest="eval", action="store_false", help="skip evaluation")
    add_eval_scale(ev, "the architecture's own side; in a comparison that mixes 28x28 and 32x32 architectures, 32 "
                       "for all")
    p.add_argument("--checkpoint-every", type=parse_int, metavar="N", help="also write a checkpoint every N batches")
    p.add_argument("--set", dest="hparams", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                   help="override an architecture hyperparameter, e.g. --set lr=1e-4 (repeatable)")


def add_eval_scale(p: Any, default: str) -> None:
    """``--eval-scale 28|32``: the side every image is brought to before it is scored."""
    p.add_argument("--eval-scale", type=parse_int, metavar="28|32",
                   help="the side every image, real or generated, is brought to before it is scored (bilinear, "
                        "rounded to 8 bits, as the 32x32 architectures' training data); FIDs compare only on one "
                        f"scale (default: {default})")


def add_fid_backbone_options(p: argparse.ArgumentParser) -> None:
    """Add the options that add the classic Inception FID to an evaluation (eval, score)."""
    p.add_argument("--fid-backbone", default="classifier", choices=["classifier", "inception"],
                   help="inception adds the classic FID (needs --inception-weights)")
    p.add_argument("--inception-weights", metavar="PATH", help="FID Inception-v3 weights (pt_inception-2015-12-05)")


def given_training_options(args: argparse.Namespace) -> list[str]:
    """Return the training options ``args`` holds with other values than their defaults, as flags (``--steps``)."""
    defaults = argparse.ArgumentParser(add_help=False)
    add_training_options(defaults, seed=hasattr(args, "seed"))
    return [action.option_strings[0] for action in defaults._actions
            if getattr(args, action.dest, action.default) != action.default]


def refuse_with_resume(args: argparse.Namespace, what: str, **others: bool) -> None:
    """Raise :class:`UsageError` naming the options given with ``--resume``, which takes ``what``'s own settings.

    Args:
        others: further flags (``arch=True`` for ``--arch``) and whether each was given.
    """
    given = ["--" + flag.replace("_", "-") for flag, was_given in others.items() if was_given]
    given += given_training_options(args)
    if given:
        raise UsageError(f"--resume continues the {what} with its own settings; drop {', '.join(given)}")


def add_resume_options(p: argparse.ArgumentParser, what: str, plan: bool = True) -> None:
    """``--skip-damaged`` (and for plans ``--retry-failed``): what a resume does with runs that cannot continue."""
    if plan:
        p.add_argument("--retry-failed", action="store_true",
                       help=f"with --resume: train the {what}'s failed runs again, afresh")
    p.add_argument("--skip-damaged", action="store_true",
                   help="with --resume: go on without the seeds whose checkpoint is damaged or whose run folder is "
                        "missing (they are marked failed) instead of refusing")


def check_resume_options(args: argparse.Namespace, folder: str) -> None:
    """Refuse ``--retry-failed``/``--skip-damaged`` without ``--resume``."""
    for flag in ("retry_failed", "skip_damaged"):
        if getattr(args, flag, False) and not args.resume:
            raise UsageError(f"--{flag.replace('_', '-')} goes with --resume {folder}")


def add_plan_options(p: argparse.ArgumentParser, example: str) -> None:
    """The options of the commands that run a plan of several runs (compare, sweep)."""
    p.add_argument("--arch", type=parse_archs, help=f"comma-separated architectures, e.g. {example}")
    p.add_argument("--seeds", type=parse_seeds, default=[0], metavar="N|LIST",
                   help=f"a count (3 = seeds 0,1,2; at most {MAX_SEEDS:,}) or a list (0,5,7; each 0 to "
                        f"{SEED_LIMIT - 1}); default 1")
    add_fid_target(p)


def add_parallel_options(p: argparse.ArgumentParser) -> None:
    """The options that train several runs at once: ``--jobs`` processes, or stacks of seeds."""
    p.add_argument("--jobs", type=parse_int, metavar="N",
                   help="train N runs at once, each in a process of its own with its share of the CPUs as torch "
                        "threads (default: on the CPU whichever of one at a time and one per free CPU measures faster "
                        "for the plan, recorded in run.json; on a GPU 1)")
    p.add_argument("--stack", action=argparse.BooleanOptionalAction, default=None,
                   help="train the seeds of each architecture as one stacked model, each seed still a run of its "
                        "own (default: on a GPU where the architecture allows it; --no-stack: never)")
    p.add_argument("--stack-size", type=parse_int, metavar="K",
                   help="at most K seeds per stack (default 16)")


def check_parallel_options(args: argparse.Namespace) -> None:
    """Refuse ``--jobs``/``--stack`` values and combinations that cannot work, before anything is written."""
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.stack_size is not None and args.stack_size < 1:
        raise UsageError(f"--stack-size must be at least 1, got {args.stack_size}")
    if args.stack and args.jobs is not None and args.jobs > 1:
        raise UsageError("--stack trains its stacks here one after another; drop --jobs (or --stack)")
    if args.stack_size is not None and args.stack is False:
        raise UsageError("--stack-size goes with stacks; drop it or --no-stack")


def add_fid_target(p: argparse.ArgumentParser, help: str = "FID for time-to-quality") -> None:
    scales = ", ".join(f"{target:g} at {side}x{side}" for side, target in DEFAULT_FID_TARGETS.items())
    p.add_argument("--fid-target", type=positive_float, metavar="FID",
                   help=f"{help} (default: the evaluation scale's, {scales})")


def run_config(args: argparse.Namespace, arch: str) -> RunConfig:
    """Build a RunConfig from parsed training options."""
    every = args.eval_every
    return RunConfig(
        arch=arch, epochs=args.epochs, steps=args.steps, time_budget=args.time_budget,
        batch_size=args.batch_size, seed=getattr(args, "seed", 0), device=args.device, precision=args.precision,
        threads=args.threads, cuda_graphs=args.cuda_graphs, out=args.out,
        sample_every=args.sample_every, log_every=args.log_every, warmup_steps=args.warmup_steps,
        train_subset=args.train_subset, data_dir=args.data_dir, eval=args.eval,
        eval_every=int(every[1]) if every and every[0] == "steps" else None,
        eval_every_s=every[1] if every and every[0] == "seconds" else None,
        eval_samples=args.eval_samples, checkpoint_every=args.checkpoint_every, hparams=hparam_overrides(args.hparams),
        eval_scale=args.eval_scale,
    )


def plan_settings(args: argparse.Namespace) -> PlanSettings:
    """The run settings a plan shares across its entries (everything but arch, seed and out), from
    ``bench compare``, ``bench sweep`` or ``bench run --seeds`` options: checked here, where they enter."""
    if not args.arch:
        raise UsageError(f"--arch NAME[,NAME...] is required (see: {console.program()} list)")
    cfg = run_config(args, "-")
    cfg.validate()
    return plan_settings_of(cfg, stack=getattr(args, "stack", None), stack_size=getattr(args, "stack_size", None))


# Where a plan's runs train (compare, sweep) ------------------------------------------------------


def add_backend_options(p: argparse.ArgumentParser, ray_help: str) -> None:
    """``--backend local|ray``, the local parallel options and the Ray ones."""
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help=f"local: on this machine (default; --jobs runs at once); ray: {ray_help}")
    add_parallel_options(p)
    ray = p.add_argument_group("Ray (--backend ray; needs: " + INSTALL_HINT + ")")
    ray.add_argument("--address", help="the Ray cluster to join (default: start Ray on this machine)")
    ray.add_argument("--cpus-per-run", type=parse_int, metavar="N",
                     help="CPUs each run declares and uses as torch threads (default 1)")
    ray.add_argument("--gpus-per-run", type=parse_number, metavar="N",
                     help="GPUs each run declares (default 0: the CPU; 1 places one run per GPU)")
    ray.add_argument("--no-shared-storage", dest="shared", action="store_false", default=None,
                     help="the nodes share no disk: each run's folder is sent back and written by this process")


def ray_backend(args: argparse.Namespace) -> RayBackend | None:
    """The Ray backend if the options ask for it (None for the local one), refusing options of the other one."""
    ray_only = {"--address": args.address, "--cpus-per-run": args.cpus_per_run, "--gpus-per-run": args.gpus_per_run,
                "--no-shared-storage": args.shared}
    check_parallel_options(args)
    if args.backend == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to --backend ray")
        return None
    if args.jobs is not None:
        raise UsageError("--jobs applies to --backend local; on Ray, --cpus-per-run and the cluster decide")
    if args.stack and args.shared is False:
        raise UsageError("--stack on Ray writes its seeds' run folders from one task: it needs storage every node "
                         "shares; drop --no-shared-storage")
    cpus = 1 if args.cpus_per_run is None else args.cpus_per_run
    gpus = 0.0 if args.gpus_per_run is None else args.gpus_per_run
    if not 1 <= cpus <= MAX_THREADS:  # each run uses its CPUs as torch threads
        raise UsageError(f"--cpus-per-run must be between 1 and {MAX_THREADS}, got {cpus}")
    if gpus < 0:
        raise UsageError(f"--gpus-per-run must be 0 or more, got {gpus:g}")
    stack_size = (args.stack_size or DEFAULT_STACK_SIZE) if args.stack else None
    return RayBackend(args.address, cpus, gpus, shared=args.shared is not False, stack_size=stack_size)
