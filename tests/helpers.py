"""Helpers shared by the tests: running the command line, fake plugin distributions.

Imported as ``helpers`` (tests/conftest.py's folder is on sys.path); fixtures live in conftest.py.
"""

from __future__ import annotations

import copy
import io
import importlib.metadata as md
import os
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from functools import lru_cache
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.config import Budget
from bench.layout import LOSS_TAGS, LOSSES_CSV, METRICS_CSV, SAMPLES, Status
from bench.record import (
    DiscriminatorMeans, Environment, Evaluation, Losses, Metrics, RecordedConfig, RunRecord, TimingRecord,
)
from bench.registry import GROUP, Registry, discover
from bench.schema import to_plain
from bench.stop import StopRequest
from bench.storage import write_csv

REPO = Path(__file__).resolve().parent.parent


class StopAfter(StopRequest):
    """A stop request that a 'signal' (SIGINT) makes after it has been asked ``n`` times (about once per batch)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    @property
    def requested(self) -> bool:
        self.n -= 1
        if self.n < 0:
            self.request(signal.SIGINT)
        return self.signal is not None


#: The distribution whose entry points are the built-in architectures.
BUILTIN_PACKAGE = "gan-bench"


@lru_cache(maxsize=1)
def builtin_registry() -> Registry:
    """The built-in architectures alone: gan-bench's own entry points, whatever else is installed.

    gan-bench's tests walk these (timm-style); a third-party plugin is checked by its author with
    bench.testing.check_architecture, so a broken one installed here cannot fail gan-bench's tests.
    """
    return Registry(discover([md.distribution(BUILTIN_PACKAGE)]))


def architecture_names() -> list[str]:
    """The built-in architectures' names."""
    return builtin_registry().names()


def architectures_where(has: Callable[[type], bool]) -> list[str]:
    """The built-ins whose GAN class (the spec's ``build``) ``has`` a property: tests walk the registry by what
    an architecture declares, so a new built-in joins every test that applies to it."""
    registry = builtin_registry()
    return [name for name in registry.names() if has(registry.load(name).build)]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess:
    """Run ``python -m bench ARGS`` in a subprocess and capture its output."""
    env = dict(os.environ if env is None else env, COLUMNS="120", PYTHONUNBUFFERED="1",
               TMPDIR=tempfile.gettempdir())  # the suite's temp folder (tests/conftest.py)
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


#: The training step of the test plugins (a train_step's body up to its return): one
#: non-saturating (softplus) step of D, then of G.
SOFTPLUS_STEPS = """\
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        d_loss = (torch.nn.functional.softplus(-self.discriminator(real)).mean()
                  + torch.nn.functional.softplus(self.discriminator(self.generator(z).detach())).mean())
        self.opt_d.zero_grad(); d_loss.backward(); self.opt_d.step()
        g_loss = torch.nn.functional.softplus(-self.discriminator(self.generator(z))).mean()
        self.opt_g.zero_grad(); g_loss.backward(); self.opt_g.step()
"""

GOOD_MODULE = """
from dataclasses import dataclass
import torch
from bench.contract import GAN, ArchSpec, GANConfig

@dataclass
class Cfg(GANConfig):
    pass

class Tiny(GAN):
    def __init__(self, cfg, device):
        self.latent_dim = cfg.latent_dim
        self.generator = torch.nn.Sequential(
            torch.nn.Linear(cfg.latent_dim, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28))
        ).to(device)
        self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1)).to(device)
        self.opt_g = torch.optim.SGD(self.generator.parameters(), lr=0.01)
        self.opt_d = torch.optim.SGD(self.discriminator.parameters(), lr=0.01)

    def train_step(self, real, step):
""" + SOFTPLUS_STEPS + """        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

SPEC = ArchSpec(name="{name}", description="a tiny test GAN", image_size=28, config=Cfg, build=Tiny)
"""


EMA_MODULE = """
import copy
import io
from dataclasses import dataclass
import torch
from bench.contract import GAN, ArchSpec, GANConfig

@dataclass
class Cfg(GANConfig):
    batch_size: int = 16
    ema_decay: float = 0.8

class EMA(GAN):
    \"\"\"A tiny GAN that samples from an exponential moving average of its generator's weights.\"\"\"

    def __init__(self, cfg, device):
        self.latent_dim = cfg.latent_dim
        self.decay = cfg.ema_decay
        self.generator = torch.nn.Sequential(
            torch.nn.Linear(cfg.latent_dim, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28))
        ).to(device)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1)).to(device)
        self.opt_g = torch.optim.SGD(self.generator.parameters(), lr=0.05)
        self.opt_d = torch.optim.SGD(self.discriminator.parameters(), lr=0.05)

    def networks(self):
        return {**super().networks(), "ema": self.ema}  # checkpoints keep it

    def train_step(self, real, step):
""" + SOFTPLUS_STEPS + """        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.generator.parameters()):
                e.lerp_(p, 1 - self.decay)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    @torch.no_grad()
    def generate(self, z):
        return self.ema(z.to(self.device))
{sampling}
SPEC = ArchSpec(name="{name}", description="a tiny GAN sampling from an EMA", image_size=28, config=Cfg, build=EMA)
"""
#: The EMA module's declaration of its sampling state (without it, ``bench eval`` cannot rebuild the EMA).
EMA_SAMPLING = """
    def sampling_state(self):
        return {"ema": self.ema.state_dict()}

    def load_sampling_state(self, state):
        self.ema.load_state_dict(state["ema"])
"""


def ema_module(name: str, declared: bool = True) -> str:
    """The source of the EMA test plugin named ``name``, declaring its sampling state or not."""
    return EMA_MODULE.replace("{name}", name).replace("{sampling}", EMA_SAMPLING if declared else "")


def make_dist(root, dist: str, entries: dict[str, str], modules: dict[str, str] | None = None) -> None:
    """Fake an installed distribution ``dist`` declaring ``entries`` under the architecture group."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}\n[console_scripts]\nnot-an-arch = x:y\n")
    for name, source in (modules or {}).items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


# Run records and run folders, built with the run.json schema ------------------------------------

#: The evaluation protocol of fabricated runs (metrics.protocol).
EVAL_PROTOCOL = {"version": 1, "n_generated": 10000, "eval_seed": 0, "feature_network": "MNIST classifier",
                 "feature_network_sha256": "ab" * 32, "kid_subsets": 10}


def metrics_of(fid: float) -> Metrics:
    """Plausible final metrics around ``fid``."""
    return Metrics(fid=fid, kid=fid / 1000, kid_std=0.0005, precision=0.8, recall=0.6, classifier_score=9.0,
                   modes_covered=10, mode_shares=[0.1] * 10, mode_kl=0.01, eval_s=1.5,
                   protocol=copy.deepcopy(EVAL_PROTOCOL))


def make_record(
    arch: str = "vanilla",
    seed: int = 0,
    fid: float | None = 12.0,
    evaluations: list[tuple[float, ...]] | None = None,
    status: str = "completed",
    device: str = "Test CPU",
    train_subset: int | None = None,
    precision: str = "fp32",
    hparams: dict[str, Any] | None = None,
    step_ms: float = 10.0,
    images_per_s: float = 6400.0,
    wall_s: float = 100.0,
) -> RunRecord:
    """A finished run of 600 steps with the given values.

    ``evaluations`` are ``(step, train_wall_s, fid[, train_cpu_s])``; by default one final evaluation at ``fid``.
    ``fid=None`` makes an unevaluated run (metrics null, no evaluations, no references).
    """
    if evaluations is None:
        evaluations = [] if fid is None else [(600, wall_s, fid)]
    config = RecordedConfig(
        arch=arch, steps=600, batch_size=64, seed=seed, device="cpu", precision=precision, log_every=200,
        train_subset=train_subset, eval_every=200, budget=Budget("steps", 600), image_size=28, sample_seed=2024,
        hparams={"batch_size": 64, "latent_dim": 100, "lr": 2e-4, **(hparams or {})},
    )
    return RunRecord(
        arch=arch, status=Status(status), diverged_at_step=300 if status == "diverged" else None, config=config,
        params={"generator": 1_510_032, "discriminator": 533_505}, flops_per_step=1_234_000_000,
        steps=600, images_seen=600 * 64,
        timing=TimingRecord(warmup_steps=10, measured_steps=590, step_ms_median=step_ms, step_ms_p10=step_ms,
                            step_ms_p90=step_ms, images_per_s=images_per_s, wall_s=wall_s),
        losses=Losses(d=0.5, g=0.7), discriminator=DiscriminatorMeans(d_real=0.6, d_fake=0.4),
        metrics=None if fid is None else metrics_of(fid),
        evaluations=[Evaluation(step=s, train_wall_s=w, train_cpu_s=cpu[0] if cpu else None, fid=f, kid=f / 1000,
                                precision=0.8, recall=0.6, classifier_score=9.0, modes_covered=10, mode_kl=0.01)
                     for s, w, f, *cpu in evaluations],
        references=None if fid is None else {"train_vs_test": metrics_of(0.5), "noise_vs_test": metrics_of(400.0)},
        env=Environment(device="cpu", device_name=device),
    )


def make_run(root: Path, record: RunRecord | None = None, name: str | None = None, **kwargs: Any) -> Path:
    """Fabricate a run folder under ``root`` (run.json, metrics.csv, losses.csv, samples.png).

    The record is ``record``, or ``make_record(**kwargs)``; the folder is ``name``, or named
    after the record's architecture, seed, device and training subset.
    """
    import matplotlib.image
    import numpy as np

    if record is None:
        record = make_record(**kwargs)
    cfg = record.config
    folder = root / (name or f"{record.arch}-s{cfg.seed}-{record.env.device_name.replace(' ', '_')}-{cfg.train_subset}")
    folder.mkdir(parents=True)
    record.write(folder)
    rows = [to_plain(e) for e in record.evaluations]
    if rows:
        write_csv(folder / METRICS_CSV, list(rows[0]), [list(r.values()) for r in rows])
    write_csv(folder / LOSSES_CSV, ["step", *LOSS_TAGS.values()],
              [[s, 0.7 - s / 6000, 0.9 + s / 6000 + cfg.seed / 10, 0.6, 0.4] for s in (200, 400, 600)])
    matplotlib.image.imsave(folder / SAMPLES, np.full((12, 12), cfg.seed / 10.0), cmap="gray", format="png")
    return folder


# Hostile inputs --------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` gray pixels and holds none (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def npy_claiming(shape: tuple[int, ...], data: bytes = b"\0" * 64) -> bytes:
    """An ``.npy`` whose header declares ``shape`` uint8 values but which holds only ``data``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data
