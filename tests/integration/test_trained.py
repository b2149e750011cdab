"""A finished run rebuilt for bench eval: the generator, and what generate() needs besides it."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace

import pytest
import torch

from bench.config import RunConfig
from bench.errors import PluginError, UsageError
from bench.training.runner import Runner
from bench.training.trained import load_trained

from helpers import ema_module

CPU = torch.device("cpu")


@pytest.fixture
def ema_spec(tmp_path, monkeypatch):
    """The EMA test plugin (declaring its sampling state), imported from tmp_path."""
    (tmp_path / "ema_trained_arch.py").write_text(ema_module("ema"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("ema_trained_arch").SPEC
    sys.modules.pop("ema_trained_arch", None)


def test_the_sampling_state_is_loaded_back_and_a_missing_or_damaged_one_is_named(ema_spec, tmp_path, capsys):
    runner = Runner(RunConfig("ema", steps=6, out=str(tmp_path / "runs"), eval=False), ema_spec)
    runner.train()
    run_dir = runner.run.dir
    z = runner.gan.sample_latent(8, torch.Generator().manual_seed(0))
    _, gan = load_trained(run_dir, lambda name: ema_spec, CPU)
    assert torch.equal(gan.generate(z), runner.gan.generate(z))

    (run_dir / "sampling.pt").write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match=r"sampling.pt cannot be loaded into ema: "):
        load_trained(run_dir, lambda name: ema_spec, CPU)

    (run_dir / "sampling.pt").unlink()  # as a run written before gan-bench kept it
    capsys.readouterr()
    _, stale = load_trained(run_dir, lambda name: ema_spec, CPU)
    assert "has no sampling.pt" in capsys.readouterr().err
    assert not torch.equal(stale.generate(z), runner.gan.generate(z))


def test_a_sampling_state_that_raises_is_the_plugins_error(ema_spec, tmp_path):
    class Raising(ema_spec.build):
        def sampling_state(self):
            raise KeyError("ema")

    runner = Runner(RunConfig("ema", steps=2, out=str(tmp_path / "runs"), eval=False), replace(ema_spec, build=Raising))
    with pytest.raises(PluginError, match="^architecture 'ema': sampling_state raised KeyError"):
        runner.train()
