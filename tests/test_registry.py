"""Discovery through entry points, with fake installed distributions in tmp_path."""

from __future__ import annotations

import importlib.metadata as md
import os
import textwrap

import pytest

from bench.errors import PluginError, RegistryError
from bench.registry import GROUP, Registry, discover

from conftest import run_cli

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


def test_discovery_reads_without_importing_and_sorts(tmp_path):
    make_dist(tmp_path, "pkg-b", {"zeta": "never_imported_z:SPEC", "alpha": "never_imported_a:SPEC"})
    entries = discover(md.distributions(path=[str(tmp_path)]))
    assert [e.name for e in entries] == ["alpha", "zeta"]
    assert entries[0].package == "pkg-b" and entries[0].value == "never_imported_a:SPEC"
    assert "never_imported_a" not in __import__("sys").modules


def test_duplicate_name_names_both_packages(tmp_path):
    make_dist(tmp_path, "first-pkg", {"same": "a:SPEC"})
    make_dist(tmp_path, "second-pkg", {"same": "b:SPEC"})
    with pytest.raises(RegistryError, match="'same'.*first-pkg and second-pkg"):
        discover(md.distributions(path=[str(tmp_path)]))


def test_same_distribution_seen_twice_is_not_a_duplicate(tmp_path):
    make_dist(tmp_path, "pkg", {"one": "m:SPEC"})
    dists = list(md.distributions(path=[str(tmp_path)]))
    assert [e.name for e in discover(dists + dists)] == ["one"]


def test_broken_plugin_is_reported_and_others_still_load(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    make_dist(
        tmp_path, "plugins",
        {"good": "good_arch:SPEC", "broken": "broken_arch:SPEC", "wrong": "wrong_arch:SPEC"},
        {"good_arch": GOOD_MODULE.replace("{name}", "good"),
         "broken_arch": "raise ImportError('needs a library that is not installed')\n",
         "wrong_arch": "SPEC = 42\n"},
    )
    registry = Registry(discover(md.distributions(path=[str(tmp_path)])))
    with pytest.raises(PluginError, match="'broken'.*plugins.*ImportError: needs a library"):
        registry.load("broken")
    with pytest.raises(PluginError, match="'wrong'.*not a bench.contract.ArchSpec"):
        registry.load("wrong")
    assert registry.load("good").name == "good"
    rows = registry.load_all()
    assert [(e.name, spec is not None) for e, spec, _ in rows] == [("broken", False), ("good", True), ("wrong", False)]


def test_unknown_name_lists_known_and_closest(tmp_path):
    make_dist(tmp_path, "pkg", {"vanilla": "v:SPEC", "dcgan": "d:SPEC"})
    registry = Registry(discover(md.distributions(path=[str(tmp_path)])))
    with pytest.raises(RegistryError, match=r"unknown architecture 'vanila' \(did you mean 'vanilla'\?\); known: dcgan, vanilla"):
        registry.entry("vanila")


def test_builtin_vanilla_is_an_entry_point_of_this_project():
    entries = {e.name: e for e in discover()}
    assert entries["vanilla"].package == "gan-bench"
    assert entries["vanilla"].value == "architectures.vanilla:SPEC"


def test_cli_reports_a_broken_plugin_and_keeps_working(tmp_path):
    make_dist(tmp_path, "broken-plugin", {"broken": "broken_arch:SPEC"},
              {"broken_arch": "raise RuntimeError('boom at import')\n"})
    env_path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"], old = env_path, os.environ.get("PYTHONPATH")
    try:
        listing = run_cli("list")
        failed = run_cli("run", "--arch", "broken", "--steps", "1")
        unknown = run_cli("run", "--arch", "vanila", "--steps", "1")
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    assert listing.returncode == 0
    assert "broken" in listing.stdout and "boom at import" in listing.stdout and "vanilla" in listing.stdout
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "architecture 'broken'" in failed.stderr and "boom at import" in failed.stderr
    assert unknown.returncode == 2 and "did you mean 'vanilla'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
