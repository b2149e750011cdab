"""The shared runner: budgets, determinism, result files, contract checks, divergence."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import signal
import threading
from dataclasses import dataclass, replace

import pytest
import torch
from PIL import Image

from bench.architectures.nets import MLPGenerator
from bench.config import RunConfig
from bench.contract import GAN, ArchSpec, GANConfig
from bench.errors import PluginError, UsageError
from bench.layout import Status
from bench.registry import default_registry
from bench.stop import StopRequest
from bench.training.flops import measure_flops
from bench.training.checks import build_gan
from bench.training.runner import Runner

from helpers import architecture_names, builtin_registry, run_cli


def vanilla():
    return default_registry().load("vanilla")


def test_cli_run_writes_every_result_file(tmp_path):
    proc = run_cli("run", "--arch", "vanilla", "--steps", "30", "--log-every", "10", "--sample-every", "10",
                   "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("vanilla-") and run_dir.name.endswith("-s0")
    assert "run summary" in proc.stdout and "images / s" in proc.stdout

    record = json.loads((run_dir / "run.json").read_text())
    assert record["arch"] == "vanilla" and record["status"] == "completed"
    assert record["steps"] == 30 and record["images_seen"] == 30 * 64
    assert record["params"] == {"generator": 1_510_032, "discriminator": 533_505}
    assert record["config"]["batch_size"] == 64 and record["config"]["hparams"]["bn_eps"] == 0.8
    assert record["config"]["budget"] == {"kind": "steps", "value": 30}
    timing = record["timing"]
    assert timing["warmup_steps"] == 10 and timing["measured_steps"] == 20
    assert 0 < timing["step_ms_p10"] <= timing["step_ms_median"] <= timing["step_ms_p90"]
    assert timing["images_per_s"] > 0 and timing["wall_s"] > 0
    assert set(record["losses"]) == {"d", "g"} and all(v > 0 for v in record["losses"].values())
    assert 0 < record["discriminator"]["d_real"] < 1
    for key in ("python", "torch", "gan_bench", "device_name", "cpu_model", "cpu_count", "git_commit"):
        assert key in record["env"]
    assert (record["package"], record["package_version"]) == ("gan-bench", importlib.metadata.version("gan-bench"))

    rows = list(csv.reader((run_dir / "losses.csv").open()))
    assert rows[0] == ["step", "loss/D", "loss/G", "D(x)", "D(G(z))"]
    assert [r[0] for r in rows[1:]] == ["10", "20", "30"]

    with Image.open(run_dir / "samples.png") as img:
        assert img.size == (5 * 28 + 6 * 2, 5 * 28 + 6 * 2)
    state = torch.load(run_dir / "generator.pt", weights_only=True)
    MLPGenerator().load_state_dict(state)
    assert not (run_dir / "sampling.pt").exists()  # vanilla generates from its generator alone

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb")).Reload()
    tags = events.Tags()
    assert {"loss/D", "loss/G", "D(x)", "D(G(z))", "time/step_ms", "time/images_per_s"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/G")] == [10, 20, 30]
    assert "samples" in tags["images"]
    assert not list(run_dir.glob(".*.tmp")), "temporary files left behind"


def test_the_hparams_view_holds_the_protocol_and_hyperparameters_only(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    config = RunConfig("vanilla", steps=6, log_every=3, sample_every=0, eval_samples=100, threads=1,
                       checkpoint_every=3, out=str(tmp_path), hparams={"lr": "1e-4"})
    record = Runner(config, vanilla()).train()
    events = EventAccumulator(str(next(tmp_path.iterdir()) / "tb")).Reload()
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    setting = hparams.pop("setting")
    assert hparams == {
        "arch": "vanilla", "budget": "steps=6", "batch_size": 64, "train_subset": "all", "train_precision": "fp32",
        "seed": 0, "eval_samples": 100, "device": "cpu",
        "hp.latent_dim": 100, "hp.lr": 1e-4, "hp.b1": 0.5, "hp.b2": 0.999, "hp.bn_eps": 0.8,
    }
    # every setting but the seed in one value, to group a setting's seeds by
    assert setting.startswith("vanilla budget=steps=6 batch_size=64 ") and "hp.lr=0.0001" in setting
    assert "seed" not in setting
    # FID against whole training seconds as the step
    seconds = [round(e.train_wall_s) for e in record.evaluations]
    assert [e.step for e in events.Scalars("metrics_vs_time/fid")] == seconds
    # each evaluation keeps the process's CPU seconds beside the wall seconds, in run.json and metrics.csv
    assert record.evaluations and all(e.train_cpu_s > 0 for e in record.evaluations)
    with open(next(tmp_path.iterdir()) / "metrics.csv") as fh:
        header, *rows = list(csv.reader(fh))
    assert header[:3] == ["step", "train_wall_s", "train_cpu_s"] and [float(r[2]) for r in rows] == pytest.approx(
        [e.train_cpu_s for e in record.evaluations], rel=1e-5)
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    tags = [m.name.tag for m in experiment.metric_infos]
    assert tags == ["final/fid", "final/kid", "final/precision", "final/recall", "final/classifier_score",
                    "final/modes_covered", "final/mode_kl"]
    # No name is used for two things: no setting is named as a metric, and each metric is one
    # point at the last step, not a curve's last point.
    assert not {tag.removeprefix("final/") for tag in tags} & set(hparams)
    assert all(len(events.Scalars(tag)) == 1 for tag in tags)
    assert [(e.step, e.value) for e in events.Scalars("final/fid")] == [(6, pytest.approx(record.metrics.fid))]


def test_same_seed_same_run_and_other_seed_differs(tmp_path):
    def losses(seed):
        runner = Runner(RunConfig("vanilla", steps=12, log_every=4, out=str(tmp_path), seed=seed, eval=False),
                        vanilla())
        runner.train()
        return [(h["d_loss"], h["g_loss"]) for h in runner.run.state.history], runner.gan.generator.state_dict()

    a, wa = losses(0)
    b, wb = losses(0)
    c, _ = losses(1)
    assert a == b and len(a) == 12
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a != c


def test_time_budget_stops_at_a_batch_boundary_after_it(tmp_path):
    runner = Runner(RunConfig("vanilla", time_budget=0.5, out=str(tmp_path), batch_size=16, eval=False), vanilla())
    record = runner.train()
    assert record.status is Status.COMPLETED and record.steps >= 1
    wall = record.timing.wall_s
    assert wall >= 0.5
    # It stopped at the first boundary after the budget: before the last batch it was under it.
    assert wall - runner.run.state.times_ms[-1] / 1e3 < 0.5 + 0.5  # slack for logging on a busy machine
    assert (record.config.budget.kind, record.config.budget.value) == ("time_budget", 0.5)


def test_epochs_budget_counts_the_partial_last_batch(tmp_path):
    runner = Runner(RunConfig("vanilla", epochs=1, train_subset=100, batch_size=64, out=str(tmp_path), eval=False),
                    vanilla())
    record = runner.train()
    assert record.steps == 2 and record.images_seen == 100


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 10, "epochs": 1}, "--epochs and --steps given together"),
        ({"steps": 0}, "--steps must be a positive number"),
        ({"time_budget": -1.0}, "--time-budget must be a positive number"),
        ({"steps": 1, "batch_size": 0}, "--batch-size must be at least 1"),
        ({"steps": 1, "batch_size": 60001}, "larger than the training set"),
        ({"steps": 1, "train_subset": 0}, "--train-subset must be between 1 and 60000"),
        ({"steps": 1, "device": "tpu"}, "unknown --device"),
        ({"steps": 1, "hparams": {"nope": "1"}}, "unknown hyperparameter"),
    ],
)
def test_bad_settings_are_usage_errors(kwargs, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        Runner(RunConfig("vanilla", out=str(tmp_path), eval=False, **kwargs), vanilla())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
def test_cuda_without_cuda_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="CUDA is not available"):
        Runner(RunConfig("vanilla", steps=1, device="cuda", out=str(tmp_path), eval=False), vanilla())


@dataclass
class ToyConfig(GANConfig):
    batch_size: int = 8
    nan_at: int = -1
    raise_at: int = -1
    raise_type: str = "RuntimeError"
    drop_g_loss: bool = False
    wrong_shape: bool = False


class Toy(GAN):
    """A tiny GAN whose misbehaviour is set through its config."""

    def __init__(self, cfg: ToyConfig, device):
        self.cfg = cfg
        self.latent_dim = cfg.latent_dim
        self.generator = torch.nn.Sequential(
            torch.nn.Linear(cfg.latent_dim, 784), torch.nn.Tanh(), torch.nn.Unflatten(1, (1, 28, 28))
        )
        self.discriminator = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1))
        self.opt_g = torch.optim.SGD(self.generator.parameters(), lr=0.01)
        self.opt_d = torch.optim.SGD(self.discriminator.parameters(), lr=0.01)

    def train_step(self, real, step):
        if step == self.cfg.raise_at:
            raise {"RuntimeError": RuntimeError, "ValueError": ValueError}[self.cfg.raise_type]("the plugin's own bug")
        fake = self.generator(torch.randn(real.shape[0], self.latent_dim))
        if self.cfg.wrong_shape:
            fake = fake[:, :, :27, :27]  # a shape bug: the discriminator's Linear(784) cannot take it
        d_loss = self.discriminator(fake.detach()).mean() - self.discriminator(real).mean()
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        g_loss = -self.discriminator(fake).mean()
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        if step >= self.cfg.nan_at >= 0:
            d_loss = d_loss * float("nan")
        out = {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
        if self.cfg.drop_g_loss:
            del out["g_loss"]
        return out


TOY = ArchSpec("toy", "a toy", 28, ToyConfig, Toy)


def test_divergence_stops_the_run_and_keeps_what_was_earned(tmp_path):
    runner = Runner(RunConfig("toy", steps=100, log_every=5, out=str(tmp_path), eval=False, hparams={"nan_at": 7}), TOY)
    record = runner.train()
    assert record.status is Status.DIVERGED and record.diverged_at_step == 7
    assert record.steps == 10  # stopped at the first log interval after it
    run_dir = runner.run.dir
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["status"] == "diverged"
    assert "package" not in saved and record.package is None  # a spec given directly: no package known
    assert (run_dir / "losses.csv").exists() and (run_dir / "generator.pt").exists()


def test_contract_break_names_the_plugin(tmp_path):
    with pytest.raises(PluginError, match="architecture 'toy': train_step did not return g_loss"):
        Runner(RunConfig("toy", steps=3, out=str(tmp_path), eval=False, hparams={"drop_g_loss": "true"}), TOY).train()


def test_a_step_that_raises_keeps_the_results_earned_so_far(tmp_path):
    runner = Runner(RunConfig("toy", steps=50, log_every=4, out=str(tmp_path), eval=False, hparams={"raise_at": 9}),
                    TOY)
    with pytest.raises(PluginError,
                       match="architecture 'toy': train_step raised RuntimeError at step 9: the plugin's own bug"):
        runner.train()
    run_dir = runner.run.dir
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["status"] == "failed" and saved["steps"] == 9 and "RuntimeError" in saved["error"]
    rows = list(csv.reader((run_dir / "losses.csv").open()))
    assert [r[0] for r in rows[1:]] == ["4", "8"]
    assert (run_dir / "generator.pt").is_file()


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({"raise_at": 0}, "train_step raised RuntimeError at step 0 of the FLOP count "
                          r"\(steps 0-4 on a copy of the model, before training\): the plugin's own bug"),
        ({"raise_at": 3, "raise_type": "ValueError"}, "train_step raised ValueError at step 3 of the FLOP count"),
        ({"wrong_shape": "true"}, "train_step raised RuntimeError at step 0 of the FLOP count .*mat1 and mat2 shapes"),
    ],
)
def test_a_step_that_fails_in_the_flop_count_is_the_plugins_error_before_any_folder(hparams, message, tmp_path,
                                                                                     capsys):
    """The hidden FLOP-count steps used to fail outside the plugin wrapper: "internal error" with a folder
    holding only tb/, or, for a shape bug, a FLOP-counter warning blaming torch first."""
    out = tmp_path / "runs"
    runner = Runner(RunConfig("toy", steps=20, out=str(out), eval=False, hparams=hparams), TOY)
    with pytest.raises(PluginError, match=f"^architecture 'toy': {message}"):
        runner.train()
    assert runner.run.dir is None and not out.exists(), "no run folder for a run that could not start"
    assert "FLOP counter" not in capsys.readouterr().err


def test_the_flop_counters_own_failure_stays_a_warning(capsys):
    """wgan-gp's gradient penalty (autograd.grad) defeats the FLOP counter's hooks: no FLOPs, no error."""
    spec = default_registry().load("wgan-gp")
    torch.manual_seed(0)
    gan = spec.build(spec.make_config({"batch_size": 8}), torch.device("cpu"))
    before = {k: v.clone() for k, v in gan.generator.state_dict().items()}
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    rng = torch.get_rng_state()
    assert measure_flops(gan, real, "wgan-gp") is None
    assert "FLOPs per step not measured: torch's FLOP counter failed" in capsys.readouterr().err
    assert all(torch.equal(before[k], v) for k, v in gan.generator.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_a_build_that_raises_is_the_plugins_error(tmp_path):
    def broken_build(cfg, device):
        raise RuntimeError("needs a file that is not there")

    with pytest.raises(PluginError, match="^architecture 'toy': build raised RuntimeError: needs a file"):
        Runner(RunConfig("toy", steps=3, out=str(tmp_path / "runs"), eval=False), replace(TOY, build=broken_build))
    assert not (tmp_path / "runs").exists()


def test_a_value_error_at_build_with_user_overrides_is_left_for_the_caller():
    """The seam for the user's own values: with hyperparameters overridden, ValueError/TypeError pass through."""
    def refusing(cfg, device):
        raise ValueError("Invalid learning rate: nan")

    spec = replace(TOY, build=refusing)
    with pytest.raises(PluginError, match="build raised ValueError"):
        build_gan(spec, spec.make_config(), torch.device("cpu"))
    with pytest.raises(ValueError, match="Invalid learning rate"):
        build_gan(spec, spec.make_config(), torch.device("cpu"), overridden=["lr"])


class Undeepcopyable(Toy):
    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.lock = threading.Lock()  # a plugin holding a lock, a file or a process handle


def test_a_model_that_cannot_be_deep_copied_is_the_plugins_error(tmp_path):
    runner = Runner(RunConfig("toy", steps=3, out=str(tmp_path / "runs"), eval=False),
                    replace(TOY, build=Undeepcopyable))
    with pytest.raises(PluginError, match="^architecture 'toy': cannot be deep-copied .*lock.*must be deep-copyable"):
        runner.train()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", architecture_names())
def test_every_architecture_runs_through_the_runner(name, tmp_path):
    """The runner's own work around a step (FLOP counting, logging, samples) holds for every built-in."""
    spec = builtin_registry().load(name)
    runner = Runner(RunConfig(name, steps=3, log_every=2, sample_every=2, batch_size=8, out=str(tmp_path), eval=False),
                    spec)
    record = runner.train()
    assert record.status is Status.COMPLETED and record.steps == 3
    assert (runner.run.dir / "samples.png").is_file() and (runner.run.dir / "generator.pt").is_file()


def test_the_thread_count_a_run_chose_is_recorded_and_kept_on_resume(tmp_path):
    stop = StopRequest()
    runner = Runner(RunConfig("vanilla", steps=6, log_every=2, sample_every=0, eval=False, out=str(tmp_path)),
                    vanilla(), stop=stop)
    stop.request(signal.SIGINT)  # stops after the first batch, with a checkpoint
    chosen = runner.train().config.threads
    assert chosen == torch.get_num_threads()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(chosen + 1)  # a resume elsewhere, where the default would differ
        record = Runner.resume(runner.run.dir, default_registry().load).train()
        assert record.status is Status.COMPLETED and record.config.threads == chosen
        assert record.env.torch_threads == chosen == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
