"""Helpers shared by the tests: running the command line, fake plugin distributions.

Imported as ``helpers`` (tests/conftest.py's folder is on sys.path); fixtures live in conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bench.registry import GROUP, default_registry

REPO = Path(__file__).resolve().parent.parent


def architecture_names() -> list[str]:
    return default_registry().names()


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess:
    """Run ``python -m bench ARGS`` in a subprocess and capture its output."""
    env = dict(os.environ if env is None else env, COLUMNS="120", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


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
        self.generator = torch.nn.Sequential(torch.nn.Linear(cfg.latent_dim, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28))).to(device)
        self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1)).to(device)
        self.opt_g = torch.optim.SGD(self.generator.parameters(), lr=0.01)
        self.opt_d = torch.optim.SGD(self.discriminator.parameters(), lr=0.01)

    def train_step(self, real, step):
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        d_loss = torch.nn.functional.softplus(-self.discriminator(real)).mean() + torch.nn.functional.softplus(self.discriminator(self.generator(z).detach())).mean()
        self.opt_d.zero_grad(); d_loss.backward(); self.opt_d.step()
        g_loss = torch.nn.functional.softplus(-self.discriminator(self.generator(z))).mean()
        self.opt_g.zero_grad(); g_loss.backward(); self.opt_g.step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

SPEC = ArchSpec(name="{name}", description="a tiny test GAN", image_size=28, config=Cfg, build=Tiny)
"""


def make_dist(root, dist: str, entries: dict[str, str], modules: dict[str, str] | None = None) -> None:
    """Fake an installed distribution ``dist`` declaring ``entries`` under the architecture group."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}\n[console_scripts]\nnot-an-arch = x:y\n")
    for name, source in (modules or {}).items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


