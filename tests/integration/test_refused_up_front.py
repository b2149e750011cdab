"""Bad input is exit 2 and one line, before any work: nothing trained, evaluated or written.

In-process through ``bench.cli.main``; each case would otherwise fail deep in a network,
an optimizer or torch's seeding, after minutes of work, or not at all.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench.cli import main
from bench.registry import default_registry

from helpers import SOFTPLUS_STEPS, make_dist

NO_EVAL = ["--steps", "1", "--no-eval"]


def refused(argv: list[str], capsys) -> str:
    """Run the command line; assert exit 2 and one line on stderr without a traceback; return the line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0].removeprefix("error: ")


# Hyperparameters a network or optimizer cannot take ----------------------------------------------


@pytest.mark.parametrize(
    "given, message",
    [
        (["--set", "lr=nan"], "hyperparameter lr must be a positive finite number, got nan"),
        (["--set", "lr=-1"], "hyperparameter lr must be a positive finite number, got -1.0"),
        (["--set", "lr=inf"], "hyperparameter lr must be a positive finite number, got inf"),
        (["--set", "b1=2"], "hyperparameter b1 must be a finite number in [0, 1), got 2.0"),
        (["--set", "latent_dim=-1"], "hyperparameter latent_dim must be at least 1, got -1"),
        (["--set", "latent_dim=0"], "hyperparameter latent_dim must be at least 1, got 0"),
        (["--set", "bn_eps=-1"], "hyperparameter bn_eps must be a positive finite number, got -1.0"),
        (["--batch-size", "1"], "--batch-size 1 cannot train vanilla: its BatchNorm layers need at least 2 images "
                                "per batch; choose a batch size of 2 or more"),
        (["--set", "batch_size=1"], "--set batch_size=1 cannot train vanilla: its BatchNorm layers need at least 2 "
                                    "images per batch; choose a batch size of 2 or more"),
        (["--train-subset", "65"], "batch size 64 with --train-subset 65 leaves a last batch of 1 image in every "
                                   "epoch, which vanilla's BatchNorm layers cannot train on; choose --train-subset "
                                   "64, or another batch size"),
        (["--batch-size", "59999"], "--batch-size 59999 with the 60000 training images leaves a last batch of 1 "
                                    "image in every epoch, which vanilla's BatchNorm layers cannot train on; choose "
                                    "another batch size, e.g. --batch-size 60000"),
    ],
)
def test_hyperparameters_the_networks_cannot_take(given, message, tmp_path, capsys):
    out = tmp_path / "runs"
    assert refused(["run", "--arch", "vanilla", *NO_EVAL, "--out", str(out), *given], capsys) == message
    assert not out.exists()


def test_batch_norm_in_the_generator_alone_is_enough_to_refuse(tmp_path, capsys):
    # lsgan's discriminator has no BatchNorm, its generator has; 129 = 2 * 64 + 1.
    assert "lsgan's BatchNorm" in refused(
        ["run", "--arch", "lsgan", *NO_EVAL, "--out", str(tmp_path), "--train-subset", "129"], capsys)


PLUGIN = """
from dataclasses import dataclass
import torch
from bench.contract import GAN, ArchSpec, GANConfig

@dataclass
class Cfg(GANConfig):
    lr: float = 0.01    # no declared ranges: torch's own checks are all there is
    hidden: int = 16
    fail: bool = False

class Plain(GAN):
    def __init__(self, cfg, device):
        if cfg.fail:
            raise ValueError("this plugin cannot build with fail set")
        self.latent_dim = cfg.latent_dim
        self.generator = torch.nn.Sequential(
            torch.nn.Linear(cfg.latent_dim, cfg.hidden), torch.nn.Linear(cfg.hidden, 784), torch.nn.Tanh(),
            torch.nn.Unflatten(1, (1, 28, 28))).to(device)
        self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1)).to(device)
        self.opt_g = torch.optim.SGD(self.generator.parameters(), lr=cfg.lr)
        self.opt_d = torch.optim.SGD(self.discriminator.parameters(), lr=cfg.lr)

    def train_step(self, real, step):
""" + SOFTPLUS_STEPS + """        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

SPEC = ArchSpec(name="plain", description="declares no ranges", image_size=28, config=Cfg, build=Plain)
"""


@pytest.fixture
def plain_plugin(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    make_dist(root, "plain-plugin", {"plain": "plain_arch:SPEC"}, {"plain_arch": textwrap.dedent(PLUGIN)})
    monkeypatch.syspath_prepend(str(root))
    default_registry.cache_clear()
    yield
    default_registry.cache_clear()


@pytest.mark.parametrize(
    "given, message",
    [
        (["--set", "lr=-1"], "plain cannot be built with --set lr=-1 (ValueError: Invalid learning rate: -1.0); "
                             "choose other values"),
        (["--set", "hidden=-5", "--batch-size", "8"],
         "plain cannot be built with --set hidden=-5, --batch-size 8 (RuntimeError: Trying to create tensor with "
         "negative dimension -5: [-5, 100]); choose other values"),
        (["--set", "fail=true"], "plain cannot be built with --set fail=true (ValueError: this plugin cannot build "
                                 "with fail set); choose other values"),
        (["--set", "lr=nan"], "hyperparameter lr must be a finite number, got nan"),
    ],
)
def test_a_plugin_that_declares_no_ranges_refuses_through_its_build(given, message, plain_plugin, tmp_path, capsys):
    out = tmp_path / "runs"
    assert refused(["run", "--arch", "plain", *NO_EVAL, "--out", str(out), *given], capsys) == message
    assert not out.exists()


def test_a_batch_of_one_trains_without_batch_norm(plain_plugin, tmp_path, capsys):
    assert main(["run", "--arch", "plain", *NO_EVAL, "--out", str(tmp_path), "--batch-size", "1"]) == 0


def test_a_build_that_fails_with_its_own_defaults_is_not_the_user_s_fault(plain_plugin):
    import torch

    from bench.config import RunConfig
    from bench.errors import UsageError
    from bench.training.checks import build_for_run

    spec = default_registry().load("plain")
    broken = spec.make_config({"fail": True})  # as if it were the plugin's default
    with pytest.raises(Exception) as info:
        build_for_run(spec, broken, RunConfig("plain"), torch.device("cpu"), 100)
    assert not isinstance(info.value, UsageError)


# Numbers out of range -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--arch", "vanilla", "--seed", "-1"], "--seed must be between 0 and 4294967295, got -1"),
        (["run", "--arch", "vanilla", "--seed", "4294967296"],
         "--seed must be between 0 and 4294967295, got 4294967296"),
        (["run", "--arch", "vanilla", "--seed", "99999999999999999999"],
         "--seed must be between 0 and 4294967295, got 99999999999999999999"),
        (["run", "--arch", "vanilla", "--threads", "99999999999999999999"],
         "--threads must be at most 1024, got 99999999999999999999"),
        (["compare", "--arch", "vanilla", "--seeds", "999999999999999"],
         "argument --seeds: --seeds takes at most 10,000 seeds, got 999,999,999,999,999 "
         "(see: python -m bench compare --help)"),
        (["compare", "--arch", "vanilla", "--seeds", "0,4294967296"],
         "argument --seeds: --seeds: each seed must be between 0 and 4294967295, got 4294967296 "
         "(see: python -m bench compare --help)"),
        (["sweep", "--arch", "vanilla", "--seeds=-1,2"],
         "argument --seeds: --seeds: each seed must be between 0 and 4294967295, got -1 "
         "(see: python -m bench sweep --help)"),
        (["sweep", "--arch", "vanilla", "--backend", "ray", "--cpus-per-run", "99999999999999999999"],
         "--cpus-per-run must be between 1 and 1024, got 99999999999999999999"),
        (["perf", "--arch", "vanilla", "--seed", "-5"], "--seed must be between 0 and 4294967295, got -5"),
        (["perf", "--arch", "vanilla", "--peak-seconds", "inf"],
         "argument --peak-seconds: must be a positive number, got inf (see: python -m bench perf --help)"),
    ],
)
def test_numbers_out_of_range(argv, message, tmp_path, capsys):
    out = tmp_path / "runs"
    where = ["--json", str(out / "perf.json")] if argv[0] == "perf" else ["--out", str(out), *NO_EVAL]
    assert refused([*argv, *where], capsys) == message
    assert not out.exists()


def test_the_largest_seed_trains_past_its_first_epoch(tmp_path):
    # 3 batches of 64 from 128 images: epoch 1 is seeded with seed + 1.
    argv = ["run", "--arch", "lsgan", "--seed", "4294967295", "--steps", "3", "--train-subset", "128", "--no-eval",
            "--out", str(tmp_path)]
    assert main(argv) == 0


# Everything checked before training and evaluation -----------------------------------------------


def test_eval_samples_beyond_the_training_split_before_training(tmp_path, capsys):
    out = tmp_path / "runs"
    message = refused(["run", "--arch", "vanilla", "--steps", "1", "--eval-samples", "60001", "--out", str(out)],
                      capsys)
    assert message == ("--eval-samples must be at most 60000 (the reference points compare that many training "
                       "images), got 60001")
    assert not out.exists()


def test_eval_samples_beyond_the_training_split_before_loading_a_run(tmp_path, capsys):
    # Checked first: the folder is not even a run folder.
    message = refused(["eval", str(tmp_path), "--eval-samples", "60001"], capsys)
    assert message.startswith("--eval-samples must be at most 60000")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A completed two-step run folder (no evaluation), shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("finished")
    assert main(["run", "--arch", "lsgan", "--steps", "2", "--train-subset", "128", "--no-eval", "--seed", "3",
                 "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    return run_dir


def test_eval_out_that_cannot_be_written_before_the_evaluation(finished_run, tmp_path, capsys, monkeypatch):
    import bench.cli.eval

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated before checking --out")

    monkeypatch.setattr(bench.cli.eval, "Evaluator", no_evaluation)
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be\n")
    message = refused(["eval", str(finished_run), "--out", str(blocker / "metrics.json")], capsys)
    assert message == f"--out {blocker / 'metrics.json'} cannot be written: {blocker} is a file, not a folder"
    assert refused(["eval", str(finished_run), "--out", str(tmp_path)], capsys) == (
        f"--out {tmp_path} is a folder; give a file name")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[grid]\nlr = [[[1e-4]]]\n", "--grid-file GRID: grid.lr nests lists more than two deep; give a value, a "
                                       "list of values, or a list of lists for a tuple hyperparameter"),
        (b"[grid]\nlr = [[1e-4, 2e-4]]\n",
         "vanilla: hyperparameter lr=[0.0001, 0.0002] is not a valid float (from [grid] in GRID)"),
        (b"[grid]\nlr = [[{a = 1}]]\n",
         "--grid-file GRID: grid.lr holds a table inside a list; give a value or a list of values"),
        (b"[grid.vanilla]\nlatent_dim = [true, 64]\n",
         "vanilla: hyperparameter latent_dim=True is not a valid int (from [grid.vanilla] in GRID)"),
        (b"[grid]\nb1 = [0.5, 1.5]\n",
         "vanilla: hyperparameter b1 must be a finite number in [0, 1), got 1.5 (from [grid] in GRID)"),
        (b"[grid]\nlr = [1e-4]\n# caf\xe9\n",
         "--grid-file GRID: not UTF-8 text (byte 0xe9 at offset 24); save it as UTF-8"),
    ],
)
def test_grid_files_are_checked_before_anything_runs(content, message, tmp_path, capsys):
    grid, out = tmp_path / "grid.toml", tmp_path / "sweeps"
    grid.write_bytes(content)
    argv = ["sweep", "--arch", "vanilla", "--grid-file", str(grid), *NO_EVAL, "--out", str(out)]
    assert refused(argv, capsys) == message.replace("GRID", str(grid))
    assert not out.exists()


# --resume with other options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, dropped",
    [
        (["--steps", "5", "--seed", "1"], "--steps, --seed"),
        (["--set", "lr=1e-3", "--out", "elsewhere"], "--out, --set"),
        (["--arch", "lsgan", "--no-eval", "--threads", "2"], "--arch, --threads, --no-eval"),
        (["--time-budget", "1m", "--eval-every", "30s", "--checkpoint-every", "10"],
         "--time-budget, --eval-every, --checkpoint-every"),
    ],
)
def test_run_resume_refuses_other_settings(given, dropped, finished_run, capsys):
    assert refused(["run", "--resume", str(finished_run), *given], capsys) == (
        f"--resume continues the run with its own settings; drop {dropped}")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--resume", "DIR", "--steps", "5"], "--resume continues the comparison with its own settings; "
                                                         "drop --steps"),
        (["compare", "--resume", "DIR", "--arch", "vanilla", "--seeds", "3", "--batch-size", "32"],
         "--resume continues the comparison with its own settings; drop --arch, --seeds, --batch-size"),
        (["sweep", "--resume", "DIR", "--grid", "lr=1e-4", "--set", "b1=0.4"],
         "--resume continues the sweep with its own settings; drop --grid, --set"),
        (["sweep", "--resume", "DIR", "--arch", "vanilla", "--precision", "bf16"],
         "--resume continues the sweep with its own settings; drop --arch, --precision"),
    ],
)
def test_plan_resume_refuses_other_settings(argv, message, tmp_path, capsys):
    assert refused([a.replace("DIR", str(tmp_path)) for a in argv], capsys) == message


def test_resume_still_takes_options_that_are_not_training_settings(tmp_path, capsys):
    # --fid-target only changes the table printed at the end; a run still says the folder is empty.
    message = refused(["compare", "--resume", str(tmp_path), "--fid-target", "50"], capsys)
    assert not message.startswith("--resume continues")


# A file that is not a state dict ------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _unsafe_message(path: Path, holds: str = "Python objects (posix.system)") -> str:
    return f"{path} is not a gan-bench file: it holds {holds} beyond tensors, and loading it may be unsafe; " \
           "it was not loaded"


@pytest.fixture
def copied_run(finished_run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def test_a_malicious_generator_is_refused_by_eval(copied_run, tmp_path, capsys):
    import pickle

    marker = tmp_path / "ran"
    (copied_run / "generator.pt").write_bytes(pickle.dumps(RunsCode(marker), protocol=2))
    message = refused(["eval", str(copied_run), "--eval-samples", "100"], capsys)
    assert message == _unsafe_message(copied_run / "generator.pt")
    assert "weights_only" not in message and not marker.exists()


def test_a_malicious_checkpoint_is_refused_by_resume(copied_run, tmp_path, capsys):
    import json
    import pickle

    record = json.loads((copied_run / "run.json").read_text())
    (copied_run / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    marker = tmp_path / "ran"
    (copied_run / "checkpoint.pt").write_bytes(pickle.dumps(RunsCode(marker)))  # the newest protocol
    message = refused(["run", "--resume", str(copied_run)], capsys)
    assert message == _unsafe_message(copied_run / "checkpoint.pt", "Python objects")
    assert not marker.exists()


class Custom:
    """Any class of one's own: torch.save pickles it by reference."""


def test_every_torch_file_is_loaded_through_one_safe_door(tmp_path):
    import torch

    from bench.errors import UsageError
    from bench.metrics.cache import _load
    from bench.storage import load_torch

    path = tmp_path / "custom.pt"
    torch.save({"value": Custom()}, path)
    with pytest.raises(UsageError) as info:
        load_torch(path)
    assert str(info.value) == _unsafe_message(path, f"Python objects ({__name__}.Custom)")
    assert _load(path, "any key") is None  # the metrics cache recomputes a foreign file instead
    torch.save({"key": "k", "value": {"x": torch.ones(2)}}, path)
    assert _load(path, "k")["x"].tolist() == [1.0, 1.0]


# A gzip bomb in --data-dir ------------------------------------------------------------------------


def _bomb(folder: Path, megabytes: int) -> Path:
    """Copy the packaged MNIST with train-labels replaced by ``megabytes`` MB of zeros, gzipped (64 kB a 64 MB)."""
    import gzip
    import shutil

    from bench.data import PACKAGED_DIR

    folder.mkdir()
    for f in PACKAGED_DIR.glob("*.gz"):
        shutil.copy(f, folder / f.name)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as fh:
        for _ in range(megabytes):
            fh.write(bytes(1 << 20))
    return folder


def test_a_gzip_bomb_is_refused_by_size_before_it_is_decompressed(tmp_path):
    import tracemalloc

    from bench.data import read_verified
    from bench.errors import DataError

    folder = _bomb(tmp_path / "mnist", 64)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="is altered or truncated: more than 60008 bytes uncompressed"):
            read_verified(folder, "train-labels-idx1-ubyte")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MB held for a 60 kB file"


def test_a_gzip_bomb_in_data_dir_is_one_line(tmp_path, capsys):
    folder = _bomb(tmp_path / "mnist", 2)
    message = refused(["run", "--arch", "vanilla", *NO_EVAL, "--data-dir", str(folder), "--out", str(tmp_path)],
                      capsys)
    assert message == (f"MNIST file {folder}/train-labels-idx1-ubyte.gz is altered or truncated: more than 60008 "
                       "bytes uncompressed, expected 60008 bytes with SHA-256 65a50cbbf4e906d70832878ad85ccda5333a97"
                       "f0f4c3dd2ef09a8a9eef7101c5; restore it from a clean copy of MNIST, or drop --data-dir to use "
                       "the copy shipped with gan-bench")
