"""Several seeds of one architecture trained in one process as one stacked model.

Seed ``i`` of a :class:`SeedStack` is the run ``bench run --seed seeds[i]`` makes: its GAN is
built as a single run builds it (``torch.manual_seed(seed)``, then ``spec.build``), and its
random stream continues from the global RNG state that build leaves, in a generator of its own.
Every network's parameters and buffers are then stacked along a leading seed dimension and run
by ``torch.func.vmap`` (:mod:`bench.training.stacked_nets`); one optimizer of each seed's kind,
with its hyperparameters, updates the stacked tensors. The optimizers allowed
(:data:`ELEMENTWISE_OPTIMIZERS`) update each element from that element's own gradient and state,
so one step over the stack is each seed's own step.

The architecture owns its stacked step (``GAN.stack_step``; the step shapes in
``bench.architectures.steps`` and ``bench.architectures.wgan`` implement it); the stack supplies what it
needs (:class:`bench.contract.SeedStackOps`). :func:`stackable` says up front why an
architecture cannot be stacked, so its seeds can run separately.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from bench.contract import GAN, ArchSpec, GANConfig
from bench.errors import PluginError
from bench.training.stacked_nets import SEED_DROPOUTS, SeedGenerators, StackedNetwork

#: Optimizers whose update of each element depends only on that element's gradient and state
#: (and per-tensor scalars such as the step count): over stacked tensors, each seed's own update.
#: Exact types: a subclass may change the update.
ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.Adagrad,
    torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adadelta, torch.optim.Rprop,
    torch.optim.ASGD,
)

#: One seed's training state, keyed as the stack keys it: ``net`` {network: {state name: tensor}},
#: ``groups`` {optimizer: [group settings]}, ``opt`` {optimizer: {(group, index): {state key: value}}},
#: ``extra`` {key: tensor}, ``rng``.
SeedValues = dict[str, Any]


class StackError(PluginError):
    """An architecture cannot train as a stack of seeds (its seeds can still run separately)."""


def _owner(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``name``."""
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def _class_reason(cls: type) -> str | None:
    """Why GAN class ``cls`` cannot be stacked, judged from the class alone."""
    if not issubclass(cls, GAN):
        return f"{cls.__name__} is not a bench.contract.GAN"
    if cls.not_stackable:
        return cls.not_stackable
    for single, stacked in cls.stack_counterparts.items():
        own, counterpart = _owner(cls, single), _owner(cls, stacked)
        if own is not None and (counterpart is None or not issubclass(counterpart, own)):
            return (f"{own.__name__} defines {single} without {stacked}: its step is its own, not one of a "
                    "stackable step shape (bench.architectures.steps.GeneratorFirstGAN, bench.architectures.wgan.WGAN)")
    return None


def _module_reason(name: str, net: nn.Module) -> str | None:
    """Why network ``net`` cannot run stacked under vmap, where that can be seen without running it."""
    for path, m in net.named_modules():
        where = f"{name}.{path}" if path else name
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks:
            return f"{where} ({type(m).__name__}) has hooks, which a stacked network does not run per seed"
        if isinstance(m, nn.modules.dropout._DropoutNd) and type(m) not in SEED_DROPOUTS:
            return f"{where} ({type(m).__name__}) draws masks that a stack cannot draw per seed"
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.momentum is None:
            return f"{where}: BatchNorm with momentum=None reads its batch count on the host"
    if any(p.dim() == 0 for p in net.parameters()):
        return f"{name} has a 0-dimensional parameter"
    return None


def _built_reason(gan: GAN) -> str | None:
    """Why built ``gan`` cannot be stacked: its networks or its optimizers."""
    for name, net in gan.networks().items():
        if reason := _module_reason(name, net):
            return reason
    owned = {id(p) for net in gan.networks().values() for p in net.parameters()}
    for name, opt in gan.optimizers().items():
        if type(opt) not in ELEMENTWISE_OPTIMIZERS:
            return f"optimizer {name} ({type(opt).__name__}) is not known to update element by element"
        if any(id(p) not in owned for g in opt.param_groups for p in g["params"]):
            return f"optimizer {name} updates a tensor outside the networks"
    return None


def stackable(arch: ArchSpec | GAN, config: GANConfig | None = None) -> str | None:
    """Return why ``arch`` cannot train as a stack of seeds, or None if it can.

    A spec is judged from its class where that settles it, else from one copy built on the CPU
    with ``config`` (default: the spec's defaults), the global RNG left as it was.
    """
    if isinstance(arch, GAN):
        return _class_reason(type(arch)) or _built_reason(arch)
    if isinstance(arch.build, type) and (reason := _class_reason(arch.build)):
        return reason
    with torch.random.fork_rng(devices=[]):
        gan = arch.build(config or arch.make_config(), torch.device("cpu"))
    return _class_reason(type(gan)) or _built_reason(gan)


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` (S,) shaped to broadcast over ``like`` (S, ...)."""
    return mask.view(-1, *[1] * (like.dim() - 1))


def _map_tensors(fn: Callable[[Tensor], Tensor], tree: Any) -> Any:
    """``fn`` applied to every floating-point tensor in a nest of tuples, lists and dicts."""
    if isinstance(tree, Tensor):
        return fn(tree) if tree.is_floating_point() else tree
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map_tensors(fn, t) for t in tree)
    if isinstance(tree, dict):
        return {k: _map_tensors(fn, v) for k, v in tree.items()}
    return tree


def _stacked_optimizer(opt: torch.optim.Optimizer, stacked: dict[int, Tensor]) -> torch.optim.Optimizer:
    """An optimizer of ``opt``'s type and hyperparameters over the stacked tensors of its parameters."""
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [stacked[id(p)] for p in g["params"]]}
              for g in opt.param_groups]
    accepted = inspect.signature(type(opt)).parameters
    return type(opt)(groups, **{k: v for k, v in opt.defaults.items() if k in accepted})


def _per_param(value: Any, param: Tensor) -> bool:
    """Whether optimizer state ``value`` holds one entry per element of ``param`` (else it is a shared scalar)."""
    return isinstance(value, Tensor) and value.dim() > 0 and value.shape == param.shape


class StackedModel:
    """The math of a stack: stacked networks and optimizers, per-seed draws, losses and backward.

    Implements :class:`bench.contract.SeedStackOps` over S seeds' built GANs ``gans``.
    """

    def __init__(self, name: str, gans: Sequence[GAN], rng: SeedGenerators, device: torch.device):
        self.name, self.gans, self.rng, self.device = name, list(gans), rng, device
        self.size = len(self.gans)
        self.nets = {name: StackedNetwork([g.networks()[name] for g in self.gans], rng)
                     for name in self.gans[0].networks()}
        by_id = {id(p): self.nets[name].params[k]
                 for name, net in self.gans[0].networks().items() for k, p in net.named_parameters()}
        self.opts = {name: _stacked_optimizer(opt, by_id) for name, opt in self.gans[0].optimizers().items()}
        #: Carried state per seed (leading seed dimension), as each seed's ``extra_state()`` holds it.
        self.extra: dict[str, Tensor] = {}
        #: Which seeds still train; a stopped seed's losses are masked out of every backward.
        self._active = torch.ones(self.size, dtype=torch.bool, device=device)

    def network(self, name: str) -> StackedNetwork:
        """The stacked network ``name``: (S, B, ...) in, (S, B, ...) out."""
        return self.nets[name]

    def parameters(self, name: str) -> list[Tensor]:
        """The trainable stacked parameters of network ``name``."""
        return [p for p in self.nets[name].params.values() if p.requires_grad]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The stacked optimizers, by the names of the seeds' own."""
        return self.opts

    def randn(self, *size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """``torch.randn(*size)`` per seed, from each seed's own generator: (S, *size)."""
        return self.rng.draw("randn", size, device, dtype)

    def rand(self, *size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """``torch.rand(*size)`` per seed, from each seed's own generator: (S, *size)."""
        return self.rng.draw("rand", size, device, dtype)

    def per_seed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn`` per seed; a seed whose inputs are not all finite gets NaN outputs.

        Its inputs are zeroed before ``fn`` sees them: one seed's NaN must not make a loss that
        refuses it (BCE raises on the CPU, asserts on CUDA) stop every seed. Healthy seeds' values
        and gradients are untouched (``where`` passes them through exactly).
        """
        floats = [a for a in args if isinstance(a, Tensor) and a.is_floating_point()]
        if not floats:
            return vmap(fn, randomness="error")(*args)
        bad = torch.stack([~torch.isfinite(a.detach()).reshape(self.size, -1).all(1) for a in floats]).any(0)
        clean = [torch.where(_rows(bad, a), torch.zeros((), dtype=a.dtype, device=a.device), a)
                 if isinstance(a, Tensor) and a.is_floating_point() else a for a in args]
        out = vmap(fn, randomness="error")(*clean)
        return _map_tensors(lambda t: torch.where(_rows(bad, t), torch.full((), torch.nan, dtype=t.dtype,
                                                                             device=t.device), t), out)

    def backward(self, losses: Tensor, network: str, retain_graph: bool = False) -> None:
        """Backpropagate the active seeds' ``losses`` (S,) into network ``name``'s stacked parameters."""
        # The sum's gradient is 1 for every seed, so each seed gets exactly its own gradients.
        # where, not a product: a stopped seed's NaN loss times 0 would still be NaN.
        masked = torch.where(self._active, losses, torch.zeros((), dtype=losses.dtype, device=losses.device))
        masked.sum().backward(inputs=self.parameters(network), retain_graph=retain_graph)



def _named_state(net: nn.Module) -> dict[str, Tensor]:
    """A network's parameters and buffers by state-dict name."""
    return dict((*net.named_parameters(), *net.named_buffers()))


def _copy(value: Any) -> Any:
    """A copy of a tensor; anything else as it is."""
    return value.clone() if isinstance(value, Tensor) else value


def _hyperparameters(opt: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's settings (lr, betas, ...), without its parameters."""
    return [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]


def _set_hyperparameters(opt: torch.optim.Optimizer, groups: list[dict[str, Any]]) -> None:
    """Set what :func:`_hyperparameters` returned."""
    for group, settings in zip(opt.param_groups, groups, strict=True):
        group.update(settings)


def _gan_values(gan: GAN) -> SeedValues:
    """One built GAN's training state, keyed as the stack keys it (live tensors, not copies)."""
    return {
        "net": {name: _named_state(net) for name, net in gan.networks().items()},
        "groups": {name: _hyperparameters(opt) for name, opt in gan.optimizers().items()},
        "opt": {name: {(gi, pi): dict(opt.state.get(p, {}))
                       for gi, g in enumerate(opt.param_groups) for pi, p in enumerate(g["params"])}
                for name, opt in gan.optimizers().items()},
        "extra": dict(gan.extra_state()),
    }


@torch.no_grad()
def _write_gan(gan: GAN, values: SeedValues) -> None:
    """Put one seed's ``values`` into its own GAN: networks, optimizer state and extra state."""
    for name, net in gan.networks().items():
        for k, t in _named_state(net).items():
            t.copy_(values["net"][name][k])
    for name, opt in gan.optimizers().items():
        _set_hyperparameters(opt, values["groups"][name])
        for gi, g in enumerate(opt.param_groups):
            for pi, p in enumerate(g["params"]):
                state = values["opt"][name].get((gi, pi))
                opt.state.pop(p, None)
                if state:
                    # In the parameter's layout (channels_last for dcgan), as its own optimizer makes them.
                    opt.state[p] = {k: torch.empty_like(p, dtype=v.dtype).copy_(v) if _per_param(v, p) else _copy(v)
                                    for k, v in state.items()}
    gan.load_extra_state({k: v.clone() for k, v in values["extra"].items()})


class SeedStack(StackedModel):
    """S seeds of one architecture trained as one stacked model, each seed still a run.

    Seed ``i`` (``seeds[i]``) is built exactly as ``bench run --seed seeds[i]`` builds it. Per
    step, :meth:`train_step` takes one batch per seed and returns per-seed outputs; :meth:`seed`
    gives seed ``i``'s own GAN holding its current state (to generate, evaluate, sample and
    checkpoint it); :meth:`stop` freezes a diverged seed while the others go on;
    :meth:`state_dict` and :meth:`load_state_dict` checkpoint the whole stack bit-exactly.

    Raises:
        StackError: the architecture cannot be stacked (:func:`stackable`), at construction, or
            on the first stacked step when only running it shows that (the stack is then spent:
            run the seeds separately).
    """

    def __init__(self, spec: ArchSpec, config: GANConfig, seeds: Sequence[int], device: torch.device,
                 build: Callable[[ArchSpec, GANConfig, torch.device], GAN] | None = None):
        """``build(spec, config, device)`` builds one seed's GAN (default: ``spec.build``), the
        global RNG seeded as a single run seeds it."""
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"a stack needs distinct seeds, got {list(seeds)}")
        rng = SeedGenerators(device)
        gans = []
        # Each seed as a single run seeds it; the global RNG is left as it was.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
            for seed in seeds:
                torch.manual_seed(seed)
                gans.append(build(spec, config, device) if build is not None else spec.build(config, device))
                rng.add_current()
                if len(gans) == 1 and (reason := stackable(gans[0])):
                    raise StackError(spec.name, f"cannot be stacked: {reason}")
        super().__init__(spec.name, gans, rng, device)
        self.spec, self.config, self.seeds = spec, config, tuple(seeds)
        #: Stopped seeds' state as it was when they stopped, written back after every step.
        self._frozen: dict[int, SeedValues] = {}
        self._stepped = False

    @property
    def batches_per_epoch(self) -> int | None:
        return self.gans[0].batches_per_epoch

    @batches_per_epoch.setter
    def batches_per_epoch(self, n: int | None) -> None:
        for gan in self.gans:
            gan.batches_per_epoch = n

    @property
    def active(self) -> list[bool]:
        """Which seeds still train (a stopped one keeps its state as it was when it stopped)."""
        return [i not in self._frozen for i in range(self.size)]

    def train_step(self, real: Tensor, step: int) -> dict[str, Tensor]:
        """Update every seed on its own batch ``real[i]`` of ``real`` (S, B, 1, S, S); outputs have shape (S,).

        A stopped seed's outputs are NaN.
        """
        if real.shape[0] != self.size:
            raise ValueError(f"a stack of {self.size} seeds takes {self.size} batches, got {real.shape[0]}")
        try:
            out = self.gans[0].stack_step(self, real, step)
        except Exception as exc:
            if self._stepped:
                raise
            raise StackError(self.name, f"cannot be stacked: its first stacked step raised "
                                        f"{type(exc).__name__}: {exc}") from exc
        self._stepped = True
        if self._frozen:
            self._restore_frozen()
            nan = torch.full((), torch.nan, device=self.device)
            out = {k: torch.where(self._active, v, nan.to(v.dtype)) for k, v in out.items()}
        return out

    def split(self, out: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """One step's stacked outputs as each seed's own (scalar tensors, as a single run's step returns)."""
        return [{k: v[i] for k, v in out.items()} for i in range(self.size)]

    def finite_weights(self) -> list[bool]:
        """Per seed, whether none of its parameters holds a NaN or an infinity (one host sync)."""
        params = [p.detach().flatten(1) for net in self.nets.values() for p in net.params.values() if p.numel()]
        return torch.stack([p.isfinite().all(1) for p in params]).all(0).tolist()

    def seed(self, i: int) -> GAN:
        """Seed ``i``'s own GAN holding its current networks, optimizer state and extra state.

        A copy, refreshed on every call: use it to generate, evaluate, sample or checkpoint that
        seed (``state_dict()`` is a single run's); training it does not train the stack.
        """
        _write_gan(self.gans[i], self._frozen.get(i) or self._read(i))
        return self.gans[i]

    def seed_rng_state(self, i: int) -> dict[str, Tensor]:
        """Seed ``i``'s RNG state as a single run's checkpoint holds it (``bench.device.rng_state``)."""
        if i in self._frozen:
            return {k: v.clone() for k, v in self._frozen[i]["rng"].items()}
        return self.rng.state(i)

    def stop(self, i: int) -> None:
        """Stop seed ``i`` (it diverged): its state stops changing while the other seeds go on."""
        if i not in self._frozen:
            self._frozen[i] = self._read(i, clone=True)
            self._active[i] = False

    def state_dict(self) -> dict[str, Any]:
        """The whole stack, as copies: each seed's ``gan`` and ``rng`` as a single run's checkpoint
        holds them, and which seeds are still active."""
        states = [{"gan": copy.deepcopy(self.seed(i).state_dict()), "rng": self.seed_rng_state(i)}
                  for i in range(self.size)]
        return {"arch": self.name, "seeds": list(self.seeds), "active": self.active, "states": states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (or the same built from the seeds' own checkpoints).

        Raises:
            StackError: the seeds differ from this stack's, or active seeds are at different points
                of training (their optimizers' shared step counts differ).
        """
        if list(state["seeds"]) != list(self.seeds):
            raise StackError(self.name, f"a checkpoint of seeds {list(state['seeds'])} does not fit a stack "
                                        f"of seeds {list(self.seeds)}")
        values = []
        for gan, seed_state in zip(self.gans, state["states"], strict=True):
            gan.load_state_dict(seed_state["gan"])
            values.append({**_gan_values(gan), "rng": seed_state["rng"]})
        self._import(values, list(state.get("active", [True] * self.size)))

    def _read(self, i: int, clone: bool = False) -> SeedValues:
        """Seed ``i``'s slices of the stack's state (views unless ``clone``); shared scalars are copied."""
        take = (lambda t: t.clone()) if clone else (lambda t: t)
        opt = {name: {(gi, pi): {k: take(v[i]) if _per_param(v, p) else _copy(v) for k, v in o.state.get(p, {}).items()}
                      for gi, g in enumerate(o.param_groups) for pi, p in enumerate(g["params"])}
               for name, o in self.opts.items()}
        return {"net": {name: {k: take(t[i]) for k, t in net.state().items()} for name, net in self.nets.items()},
                "groups": {name: _hyperparameters(o) for name, o in self.opts.items()}, "opt": opt,
                "extra": {k: take(v[i]) for k, v in self.extra.items()}, "rng": self.rng.state(i)}

    @torch.no_grad()
    def _restore_frozen(self) -> None:
        """Write the stopped seeds' frozen state back over whatever this step did to their slices."""
        for i, values in self._frozen.items():
            for name, net in self.nets.items():
                for k, t in net.state().items():
                    t[i].copy_(values["net"][name][k])
            for name, o in self.opts.items():
                for (gi, pi), frozen in values["opt"][name].items():
                    p = o.param_groups[gi]["params"][pi]
                    for k, v in frozen.items():
                        if _per_param(o.state.get(p, {}).get(k), p):
                            o.state[p][k][i].copy_(v)
            for k, v in values["extra"].items():
                if k in self.extra:
                    # A new tensor: the step's output may be this very tensor.
                    self.extra[k] = self.extra[k].clone()
                    self.extra[k][i].copy_(v)
            self.rng.set_state(i, values["rng"])

    @torch.no_grad()
    def _import(self, seeds: list[SeedValues], active: list[bool]) -> None:
        """Make the stack's state the seeds' ``seeds`` (shared scalars from the first active seed)."""
        live = [i for i, a in enumerate(active) if a] or [0]
        for name, net in self.nets.items():
            for k, t in net.state().items():
                t.copy_(torch.stack([v["net"][name][k] for v in seeds]))
        for name, o in self.opts.items():
            _set_hyperparameters(o, seeds[live[0]]["groups"][name])
            for gi, g in enumerate(o.param_groups):
                for pi, p in enumerate(g["params"]):
                    self._import_optimizer_state(o, p, [v["opt"][name][(gi, pi)] for v in seeds], live)
        ref = seeds[live[0]]["extra"]
        if any(seeds[i]["extra"].keys() != ref.keys() for i in live):
            raise StackError(self.name, "the seeds' carried states differ in kind; they cannot share a stack")
        self.extra = {k: torch.stack([v["extra"].get(k, torch.zeros_like(ref[k])) for v in seeds]) for k in ref}
        for i, v in enumerate(seeds):
            self.rng.set_state(i, v["rng"])
        self._frozen = {i: copy.deepcopy(v) for i, v in enumerate(seeds) if not active[i]}
        self._active = torch.tensor(active, dtype=torch.bool, device=self.device)

    def _import_optimizer_state(self, opt: torch.optim.Optimizer, p: Tensor, states: list[dict[str, Any]],
                                live: list[int]) -> None:
        """Stack the seeds' optimizer ``states`` of one parameter into ``opt``'s state of stacked ``p``."""
        ref = states[live[0]]
        for i in live:
            same = states[i].keys() == ref.keys() and all(
                _per_param(v, p[0]) or (torch.equal(v, ref[k]) if isinstance(v, Tensor) else v == ref[k])
                for k, v in states[i].items())
            if not same:
                raise StackError(self.name, f"seeds {self.seeds[live[0]]} and {self.seeds[i]} are at different points "
                                            "of training (their optimizer states differ); they cannot share a stack")
        opt.state.pop(p, None)
        if ref:
            opt.state[p] = {k: torch.empty_like(p, dtype=v.dtype).copy_(torch.stack([s.get(k, torch.zeros_like(v))
                                                                                     for s in states]))
                            if _per_param(v, p[0]) else _copy(v) for k, v in ref.items()}
