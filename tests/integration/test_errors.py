"""Bad input: one clear line on stderr, exit 2, no traceback; and the error table of docs/troubleshooting.md says so.

Run this file as a script to print that table's rows from what the program prints:
``python tests/test_errors.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main
from bench.data import PACKAGED_DIR

HERE = Path(__file__).resolve().parents[1]
#: The documentation page whose table lists every one-line error.
ERRORS_PAGE = HERE.parent / "docs" / "troubleshooting.md"


def _data_copy(d: Path) -> Path:
    d.mkdir()
    for f in PACKAGED_DIR.glob("*.gz"):
        shutil.copy(f, d / f.name)
    return d


def _missing(d: Path) -> Path:
    d = _data_copy(d)
    (d / "train-images-idx3-ubyte.gz").unlink()
    return d


def _truncated(d: Path) -> Path:
    d = _data_copy(d)
    f = d / "train-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:10000])
    return d


def _altered(d: Path) -> Path:
    d = _data_copy(d)
    f = d / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    f.write_bytes(gzip.compress(bytes(raw), mtime=0))
    return d


def _file(d: Path) -> Path:
    d.write_text("a file where a folder should be\n")
    return d


def _empty(d: Path) -> Path:
    d.mkdir()
    return d


def _run_json(text: str):
    def make(d: Path) -> Path:
        d.mkdir()
        (d / "run.json").write_text(text)
        return d
    return make


BROKEN_PLUGINS = {
    "broken_import": "raise ImportError('No module named gpu_only_lib')\n",
    "broken_step": textwrap.dedent("""
        import torch
        from bench.contract import GAN, ArchSpec, GANConfig

        class Bad(GAN):
            def __init__(self, cfg, device):
                self.latent_dim = cfg.latent_dim
                self.generator = torch.nn.Sequential(
                    torch.nn.Linear(cfg.latent_dim, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28))
                )
                self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1))
            def train_step(self, real, step):
                return {"d_loss": self.discriminator(real).mean().detach()}

        SPEC = ArchSpec("broken-step", "returns no g_loss", 28, GANConfig, Bad)
    """),
    "broken_build": textwrap.dedent("""
        from bench.contract import ArchSpec, GANConfig

        def build(cfg, device):
            raise RuntimeError("its kernels are not compiled for this machine")

        SPEC = ArchSpec("broken-build", "raises when built", 28, GANConfig, build)
    """),
    "broken_first_step": textwrap.dedent("""
        import threading
        import torch
        from bench.contract import GAN, ArchSpec, GANConfig

        class Bad(GAN):
            def __init__(self, cfg, device):
                self.latent_dim = cfg.latent_dim
                self.generator = torch.nn.Sequential(
                    torch.nn.Linear(cfg.latent_dim, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28))
                )
                self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1))
                if cfg.latent_dim == 99:
                    self.lock = threading.Lock()
            def train_step(self, real, step):
                d_loss, g_loss = self.discriminator(real).mean(dim=0)
                return {"d_loss": d_loss, "g_loss": g_loss}

        SPEC = ArchSpec("broken-first-step", "its first step raises", 28, GANConfig, Bad)
    """),
    "no_ranges": textwrap.dedent("""
        from dataclasses import dataclass
        import torch
        from bench.contract import ArchSpec, GANConfig

        @dataclass
        class Cfg(GANConfig):
            lr: float = 0.01  # declares no range: the optimizer's own check is all there is

        def build(cfg, device):
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)

        SPEC = ArchSpec("no-ranges", "declares no ranges", 28, Cfg, build)
    """),
}


def _grid(content: bytes):
    def make(d: Path) -> Path:
        d.write_bytes(content)
        return d
    return make


def _bomb(d: Path) -> Path:
    d = _data_copy(d)
    with gzip.open(d / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(bytes(1 << 20))
    return d


class _RunsCode:
    def __reduce__(self):
        return os.system, ("echo this would run",)


def _unsafe_generator(d: Path) -> Path:
    from helpers import make_run

    make_run(d.parent, name=d.name)
    (d / "generator.pt").write_bytes(pickle.dumps(_RunsCode(), protocol=2))
    return d


def _plugins(d: Path) -> Path:
    """Fake an installed distribution holding two broken plugins; put it on sys.path."""
    d.mkdir()
    info = d / "broken_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gan_bench.architectures]\nbroken-import = broken_import:SPEC\nbroken-step = broken_step:SPEC\n"
        "broken-build = broken_build:SPEC\nbroken-first-step = broken_first_step:SPEC\n"
        "no-ranges = no_ranges:SPEC\n"
    )
    for name, source in BROKEN_PLUGINS.items():
        (d / f"{name}.py").write_text(source)
    return d


def _clashing(d: Path) -> Path:
    """Fake two installed distributions that declare the same architecture name; put them on sys.path."""
    d.mkdir()
    for package in ("twin-one", "twin-two"):
        info = d / f"{package.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[gan_bench.architectures]\ntwin = {package.replace('-', '_')}:SPEC\n")
    return d


#: Preparations that install fake plugins (their folder goes on sys.path for the case).
PLUGIN_FOLDERS = (_plugins, _clashing)


def _in_folder(name: str, write):
    """Prepare DIR as a folder holding ``name``, written by ``write(path)``."""
    def make(d: Path) -> Path:
        d.mkdir()
        write(d / name)
        return d
    return make


def _npy(array: np.ndarray):
    return _in_folder("images.npy", lambda path: np.save(path, array))


def _with_nan() -> np.ndarray:
    x = np.zeros((1000, 28, 28), np.float32)
    x[7, 14, 14] = np.nan
    return x


def _pngs_of_two_sizes(d: Path) -> Path:
    d.mkdir()
    for i in range(1000):
        side = 32 if i % 100 == 0 else 28
        Image.new("L", (side, side)).save(d / f"{i:04d}.png")
    return d


def _pngs_with_a_bomb(d: Path) -> Path:
    from helpers import png_header

    d.mkdir()
    for i in range(999):
        Image.new("L", (28, 28)).save(d / f"{i:04d}.png")
    (d / "9999.png").write_bytes(png_header(30000, 30000))
    return d


def _run_with_linked_lock(d: Path) -> Path:
    from helpers import make_run

    make_run(d.parent, name=d.name)
    (d.parent / "precious").write_text("precious data")
    (d / ".gan-bench.lock").symlink_to(d.parent / "precious")
    return d


def _npy_and_link(d: Path) -> Path:
    d.mkdir()
    np.save(d / "images.npy", np.zeros((1000, 28, 28), np.uint8))
    (d / "precious.json").write_text("precious data")
    (d / "scores.json").symlink_to(d / "precious.json")
    return d


class _Pickled:
    """Any object but a tensor: torch.load(weights_only=True) refuses to rebuild it."""


# (id, the input as the error table shows it, argv with DIR for the prepared path, how to prepare DIR)
CASES = [
    ("unknown architecture", "run --arch vanila", ["run", "--arch", "vanila"], None),
    ("zero steps", "run --arch vanilla --steps 0", ["run", "--arch", "vanilla", "--steps", "0"], None),
    ("negative budget", "run --arch vanilla --epochs -3", ["run", "--arch", "vanilla", "--epochs", "-3"], None),
    ("two budgets", "run --arch vanilla --steps 100 --time-budget 5m",
     ["run", "--arch", "vanilla", "--steps", "100", "--time-budget", "5m"], None),
    ("malformed time budget", "run --arch vanilla --time-budget 10x",
     ["run", "--arch", "vanilla", "--time-budget", "10x"], None),
    ("batch size 0", "run --arch vanilla --batch-size 0", ["run", "--arch", "vanilla", "--batch-size", "0"], None),
    ("batch size too large", "run --arch vanilla --batch-size 70000",
     ["run", "--arch", "vanilla", "--batch-size", "70000"], None),
    ("train subset out of range", "run --arch vanilla --train-subset 60001",
     ["run", "--arch", "vanilla", "--train-subset", "60001"], None),
    ("cuda without CUDA", "run --arch vanilla --device cuda", ["run", "--arch", "vanilla", "--device", "cuda"], None),
    ("unknown precision", "run --arch vanilla --precision fp8",
     ["run", "--arch", "vanilla", "--precision", "fp8"], None),
    ("unknown hyperparameter", "run --arch vanilla --set lrr=1e-4",
     ["run", "--arch", "vanilla", "--set", "lrr=1e-4"], None),
    ("hyperparameter set twice", "run --arch vanilla --set lr=1e-4 --set lr=2e-4",
     ["run", "--arch", "vanilla", "--set", "lr=1e-4", "--set", "lr=2e-4"], None),
    ("unwritable --out", "run --arch vanilla --steps 1 --out DIR/runs (DIR is a file)",
     ["run", "--arch", "vanilla", "--steps", "1", "--no-eval", "--out", "DIR/runs"], _file),
    ("data file missing", "run --arch vanilla --data-dir DIR (no train-images file)",
     ["run", "--arch", "vanilla", "--data-dir", "DIR"], _missing),
    ("data file truncated", "run --arch vanilla --data-dir DIR (train-labels cut short)",
     ["run", "--arch", "vanilla", "--data-dir", "DIR"], _truncated),
    ("data file altered", "run --arch vanilla --data-dir DIR (one label changed)",
     ["run", "--arch", "vanilla", "--data-dir", "DIR"], _altered),
    ("eval on a folder without a run", "eval DIR (empty folder)", ["eval", "DIR"], _empty),
    ("eval on a damaged run.json", "eval DIR (run.json cut short)", ["eval", "DIR"], _run_json('{"arch": "vanil')),
    ("eval on a run.json of another version", "eval DIR (schema_version 99)",
     ["eval", "DIR"], _run_json(json.dumps({"schema_version": 99, "arch": "vanilla", "config": {}}))),
    ("report on a folder without runs", "report DIR (empty folder)", ["report", "DIR"], _empty),
    ("report on a damaged run.json", "report DIR (run.json cut short)",
     ["report", "DIR"], _run_json('{"arch": "vanil')),
    ("resume a folder without a run", "run --resume DIR (empty folder)", ["run", "--resume", "DIR"], _empty),
    ("plugin that raises on import", "run --arch broken-import (its module raises ImportError)",
     ["run", "--arch", "broken-import"], _plugins),
    ("score: wrong shape", "score DIR/images.npy (1000 x 3 x 28 x 28)",
     ["score", "DIR/images.npy"], _npy(np.zeros((1000, 3, 28, 28), np.uint8))),
    ("score: too few images", "score DIR/images.npy (10 images)",
     ["score", "DIR/images.npy"], _npy(np.zeros((10, 28, 28), np.uint8))),
    ("score: a NaN", "score DIR/images.npy (a NaN in image 7)", ["score", "DIR/images.npy"], _npy(_with_nan())),
    ("score: values out of range", "score DIR/images.npy (values from -3 to 4)",
     ["score", "DIR/images.npy"], _npy(np.linspace(-3, 4, 1000 * 784, dtype=np.float32).reshape(1000, 28, 28))),
    ("score: PNGs of two sizes", "score DIR (990 PNGs of 28x28, 10 of 32x32)", ["score", "DIR"], _pngs_of_two_sizes),
    ("score: empty folder", "score DIR (empty folder)", ["score", "DIR"], _empty),
    ("score: missing file", "score DIR/images.npy (no such file)", ["score", "DIR/images.npy"], _empty),
    ("score: unknown extension", "score DIR/images.jpg", ["score", "DIR/images.jpg"],
     _in_folder("images.jpg", lambda path: path.write_bytes(b"\xff\xd8"))),
    ("score: a pickled object", "score DIR/images.pt (a pickled object)", ["score", "DIR/images.pt"],
     _in_folder("images.pt", lambda path: torch.save(_Pickled(), path))),
    ("score: several arrays", "score DIR/images.npz (arrays a and b, no --key)", ["score", "DIR/images.npz"],
     _in_folder("images.npz", lambda path: np.savez(path, a=np.zeros((1000, 28, 28)), b=np.zeros((1000, 28, 28))))),
    ("score: unwritable --out", "score DIR/images.npy --out DIR/images.npy/scores.json",
     ["score", "DIR/images.npy", "--out", "DIR/images.npy/scores.json"], _npy(np.zeros((1000, 28, 28), np.uint8))),
    ("plugin whose step breaks the contract", "run --arch broken-step (its step returns no g_loss)",
     ["run", "--arch", "broken-step", "--steps", "5", "--no-eval", "--out", "DIR/runs"], _plugins),
    ("plugin whose build raises", "run --arch broken-build (its build raises RuntimeError)",
     ["run", "--arch", "broken-build", "--steps", "5", "--no-eval", "--out", "DIR/runs"], _plugins),
    ("plugin whose first step raises", "run --arch broken-first-step (its step raises ValueError)",
     ["run", "--arch", "broken-first-step", "--steps", "5", "--no-eval", "--out", "DIR/runs"], _plugins),
    ("plugin that cannot be deep-copied", "run --arch broken-first-step --set latent_dim=99 (it holds a lock)",
     ["run", "--arch", "broken-first-step", "--set", "latent_dim=99", "--steps", "5", "--no-eval", "--out", "DIR/runs"],
     _plugins),
    ("two packages declare one name", "run --arch twin (two installed packages declare it)",
     ["run", "--arch", "twin"], _clashing),
    # Hyperparameters a network or optimizer cannot take
    ("NaN learning rate", "run --arch vanilla --set lr=nan", ["run", "--arch", "vanilla", "--set", "lr=nan"], None),
    ("beta out of range", "run --arch vanilla --set b1=2", ["run", "--arch", "vanilla", "--set", "b1=2"], None),
    ("empty latent", "run --arch vanilla --set latent_dim=0",
     ["run", "--arch", "vanilla", "--set", "latent_dim=0"], None),
    ("negative BatchNorm eps", "run --arch vanilla --set bn_eps=-1",
     ["run", "--arch", "vanilla", "--set", "bn_eps=-1"], None),
    ("plugin without ranges", "run --arch no-ranges --set lr=-1 (its config declares no ranges)",
     ["run", "--arch", "no-ranges", "--set", "lr=-1", "--no-eval", "--out", "DIR/runs"], _plugins),
    ("BatchNorm with batches of 1", "run --arch vanilla --batch-size 1",
     ["run", "--arch", "vanilla", "--batch-size", "1", "--no-eval", "--out", "DIR"], None),
    ("BatchNorm with a last batch of 1", "run --arch vanilla --train-subset 65",
     ["run", "--arch", "vanilla", "--train-subset", "65", "--no-eval", "--out", "DIR"], None),
    # Numbers out of range
    ("negative seed", "run --arch vanilla --seed -1", ["run", "--arch", "vanilla", "--seed", "-1"], None),
    ("huge thread count", "run --arch vanilla --threads 99999999999999999999",
     ["run", "--arch", "vanilla", "--threads", "99999999999999999999"], None),
    ("huge seed count", "compare --arch vanilla --seeds 999999999999999",
     ["compare", "--arch", "vanilla", "--seeds", "999999999999999"], None),
    ("endless peak measurement", "perf --arch vanilla --peak-seconds inf",
     ["perf", "--arch", "vanilla", "--peak-seconds", "inf"], None),
    # Checked before training and evaluation
    ("more samples than the references", "run --arch vanilla --eval-samples 60001",
     ["run", "--arch", "vanilla", "--eval-samples", "60001"], None),
    ("too few samples for precision and recall", "compare --arch vanilla,wgan --eval-samples 3",
     ["compare", "--arch", "vanilla,wgan", "--eval-samples", "3"], None),
    ("unwritable eval --out", "eval DIR --out DIR/metrics.json (DIR is a file)",
     ["eval", "DIR", "--out", "DIR/metrics.json"], _file),
    ("grid file nesting lists", "sweep --arch vanilla --grid-file DIR (lr = [[[1e-4]]])",
     ["sweep", "--arch", "vanilla", "--grid-file", "DIR"], _grid(b"[grid]\nlr = [[[1e-4]]]\n")),
    ("grid file with a list as one value", "sweep --arch vanilla --grid-file DIR (lr = [[1e-4, 2e-4]])",
     ["sweep", "--arch", "vanilla", "--grid-file", "DIR"], _grid(b"[grid]\nlr = [[1e-4, 2e-4]]\n")),
    ("grid file with a table in a list", "sweep --arch vanilla --grid-file DIR (lr = [[{a = 1}]])",
     ["sweep", "--arch", "vanilla", "--grid-file", "DIR"], _grid(b"[grid]\nlr = [[{a = 1}]]\n")),
    ("grid file not UTF-8", "sweep --arch vanilla --grid-file DIR (Latin-1 bytes)",
     ["sweep", "--arch", "vanilla", "--grid-file", "DIR"], _grid(b"[grid]\nlr = [1e-4]  # caf\xe9\n")),
    # --resume with other options
    ("run --resume with a budget", "run --resume DIR --steps 100 --seed 1",
     ["run", "--resume", "DIR", "--steps", "100", "--seed", "1"], _empty),
    ("compare --resume with seeds", "compare --resume DIR --seeds 3 --set lr=1e-4",
     ["compare", "--resume", "DIR", "--seeds", "3", "--set", "lr=1e-4"], _empty),
    ("sweep --resume with an output folder", "sweep --resume DIR --out elsewhere",
     ["sweep", "--resume", "DIR", "--out", "elsewhere"], _empty),
    # Files that are not what they claim
    ("generator.pt that runs code", "eval DIR (generator.pt is a pickle that calls os.system)",
     ["eval", "DIR"], _unsafe_generator),
    ("gzip bomb", "run --arch vanilla --data-dir DIR (train-labels decompresses to 1 MB)",
     ["run", "--arch", "vanilla", "--data-dir", "DIR"], _bomb),
    ("score: a PNG bomb", "score DIR (999 PNGs of 28x28, one whose header claims 30000x30000)",
     ["score", "DIR"], _pngs_with_a_bomb),
    ("score: a lying .npy header", "score DIR/images.npy (header: 10^9 images; file: 64 bytes)",
     ["score", "DIR/images.npy"], _in_folder("images.npy", lambda path: path.write_bytes(_lying_npy()))),
    # Nothing written outside the folders named, through a link
    ("resume with a linked lock", "run --resume DIR (its .gan-bench.lock is a symbolic link)",
     ["run", "--resume", "DIR"], _run_with_linked_lock),
    ("score --out a link", "score DIR/images.npy --out DIR/scores.json (a symbolic link)",
     ["score", "DIR/images.npy", "--out", "DIR/scores.json"], _npy_and_link),
    # Budgets without end, and resume options without a resume
    ("a step budget beyond the bound", "run --arch vanilla --steps 2000001",
     ["run", "--arch", "vanilla", "--steps", "2000001"], None),
    ("a time budget beyond the bound", "run --arch vanilla --time-budget 200h",
     ["run", "--arch", "vanilla", "--time-budget", "200h"], None),
    ("--retry-failed without --resume", "compare --arch vanilla --retry-failed",
     ["compare", "--arch", "vanilla", "--retry-failed"], None),
    # Evaluation scales
    ("an unknown evaluation scale", "run --arch vanilla --eval-scale 30",
     ["run", "--arch", "vanilla", "--eval-scale", "30"], None),
    ("a scale below the architecture's images", "run --arch dcgan --eval-scale 28",
     ["run", "--arch", "dcgan", "--eval-scale", "28"], None),
]


def _lying_npy() -> bytes:
    from helpers import npy_claiming

    return npy_claiming((10**9, 28, 28))


def run_case(argv: list[str], prepare, tmp: Path, capsys) -> tuple[int, str]:
    """Run one case in-process; return its exit status and stderr with the temp path as DIR."""
    from bench.registry import default_registry

    d = tmp / "case"
    if prepare is not None:
        prepare(d)
    added = prepare in PLUGIN_FOLDERS
    if added:
        sys.path.insert(0, str(d))
        default_registry.cache_clear()
    try:
        argv = [a.replace("DIR", str(d)) for a in argv]
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    finally:
        if added:
            sys.path.remove(str(d))
            default_registry.cache_clear()
    err = capsys.readouterr().err
    return code, err.replace(str(d), "DIR")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    name, shown, argv, prepare = case
    if name == "cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, err = run_case(argv, prepare, tmp_path, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    # The error table of docs/troubleshooting.md shows exactly this line.
    message = lines[0].removeprefix("error: ")
    log = re.search(r" \(traceback in (\S+)\)$", message)
    if log:  # the suite's temp folder (tests/conftest.py), which pytest prunes: never the system's
        assert Path(log[1]).parent == Path(tempfile.gettempdir()) and "pytest-of-" in log[1]
    message = re.sub(r" \(traceback in \S+\)$", " (traceback in a log file)", message)
    assert f"| `{shown}` | {_md(message)} |" in ERRORS_PAGE.read_text(), f"error table row stale for {name}: {message}"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":  # print the error table's rows from what the program prints
    import tempfile

    sys.path.insert(0, str(HERE))  # where pytest finds helpers.py

    class _Cap:
        def readouterr(self):
            out = _Cap.buf.getvalue()
            _Cap.buf.seek(0)
            _Cap.buf.truncate()
            return type("R", (), {"err": out})

    import io

    from rich.console import Console

    import bench.console as bc

    _Cap.buf = io.StringIO()
    bc.err = Console(file=_Cap.buf, width=10_000, highlight=False)
    for _name, shown, argv, prepare in CASES:
        with tempfile.TemporaryDirectory() as t:
            code, err = run_case(argv, prepare, Path(t), _Cap())
        line = err.strip().splitlines()[0].removeprefix("error: ") if err.strip() else "(nothing)"
        line = re.sub(r" \(traceback in \S+\)$", " (traceback in a log file)", line)
        print(f"| `{shown}` | {_md(line)} |")
