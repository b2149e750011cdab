"""Networks of several seeds stacked along a leading seed dimension, each seed drawing from its own RNG.

A :class:`StackedNetwork` runs one copy of a network (the template) under ``torch.func.vmap``
with ``functional_call``, over parameters and buffers stacked from every seed's own network:
each seed computes exactly its own network's function, in batched kernels. Two kinds of layer
keep state or randomness that vmap cannot batch as such, and are swapped in the template only
(the seeds' own networks are untouched):

- Dropout draws its masks from the global RNG, which vmap refuses. :class:`SeedDropout` draws
  each seed's mask from that seed's generator, with the shape, dtype and call the single run's
  ``F.dropout``/``F.dropout2d`` uses, so the bits are the single run's;
- spectral norm's power iteration writes its ``u``/``v`` buffers through ``out=``, which vmap
  cannot batch. :class:`SeedSpectralNorm` writes them in place with ``copy_`` (the same values),
  so each seed's stacked buffer slice is updated as the single run updates its own.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.utils.parametrizations import _SpectralNorm

#: Dropout layers whose masks a stack draws per seed: the element-wise one, and the channel-wise
#: ones (one draw per sample and channel, as ``F.dropout1d/2d/3d`` make them).
SEED_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


class SeedGenerators:
    """One random stream per seed, each holding the state a single run's global RNG would hold.

    On CUDA a single run draws on the device's generator; the CPU state it leaves after building
    is kept too, so :meth:`state` has the shape of ``bench.device.rng_state``.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.generators: list[torch.Generator] = []
        self._host: list[Tensor] = []

    def add_current(self) -> None:
        """Add a stream that continues from the global RNG as it stands (after ``manual_seed`` and build)."""
        gen = torch.Generator(device=self.device)
        if self.device.type == "cuda":
            gen.set_state(torch.cuda.get_rng_state(self.device))
        else:
            gen.set_state(torch.get_rng_state())
        self.generators.append(gen)
        self._host.append(torch.get_rng_state())

    def state(self, i: int) -> dict[str, Tensor]:
        """Seed ``i``'s RNG state in the form of ``bench.device.rng_state`` (a single run's checkpoint)."""
        if self.device.type == "cuda":
            return {"cpu": self._host[i].clone(), "cuda": self.generators[i].get_state()}
        return {"cpu": self.generators[i].get_state()}

    def set_state(self, i: int, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state` returned (or a single run's checkpointed ``rng``)."""
        if self.device.type == "cuda":
            self._host[i] = state["cpu"].clone()
            self.generators[i].set_state(state["cuda"])
        else:
            self.generators[i].set_state(state["cpu"])

    def draw(self, fn: str, size: Sequence[int], device: torch.device | None, dtype: torch.dtype | None) -> Tensor:
        """``torch.<fn>(*size)`` drawn per seed, seed after seed: shape (S, *size)."""
        draw = getattr(torch, fn)
        device = self.device if device is None else device
        return torch.stack([draw(*size, generator=g, device=device, dtype=dtype) for g in self.generators])

    def dropout_noise(self, shape: Sequence[int], p: float, like: Tensor) -> Tensor:
        """Each seed's dropout noise, drawn as ATen's ``_dropout_impl`` draws it: (S, *shape)."""
        # empty(shape) with the input's dtype and device, bernoulli_(1 - p), div_(1 - p): that call
        # sequence on the same generator state gives the single run's bits.
        return torch.stack([torch.empty(shape, dtype=like.dtype, device=like.device)
                            .bernoulli_(1 - p, generator=g).div_(1 - p) for g in self.generators])


class _SeedDropoutFunction(torch.autograd.Function):
    """Dropout whose vmap rule sees the whole stack and draws each seed's mask from its own generator."""

    @staticmethod
    def forward(x: Tensor, p: float, feature: bool, rng: SeedGenerators) -> Tensor:
        raise RuntimeError("SeedDropout runs only inside a stacked network's vmap")

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: Tensor):
        raise RuntimeError("SeedDropout runs only inside a stacked network's vmap")

    @staticmethod
    def vmap(info, in_dims, x: Tensor, p: float, feature: bool, rng: SeedGenerators):
        # Plain ops on the stacked tensor: autograd records them, so no backward of our own.
        x = x.movedim(in_dims[0], 0)
        shape = (*x.shape[1:3], *[1] * (x.dim() - 3)) if feature else x.shape[1:]
        return x * rng.dropout_noise(shape, p, x), 0


class SeedDropout(nn.Module):
    """A template's Dropout layer: the same function, each seed's mask from that seed's generator."""

    def __init__(self, p: float, feature: bool, rng: SeedGenerators):
        super().__init__()
        self.p, self.feature, self.rng = p, feature, rng

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0 or x.numel() == 0:
            return x
        if self.p == 1:
            return x * torch.zeros((), dtype=x.dtype, device=x.device)
        return _SeedDropoutFunction.apply(x, self.p, self.feature, self.rng)


class SeedSpectralNorm(_SpectralNorm):
    """Spectral norm whose power iteration updates ``u`` and ``v`` in place, which vmap can batch."""

    @torch.no_grad()
    def _power_method(self, weight_mat: Tensor, n_power_iterations: int) -> None:
        # copy_ instead of normalize(out=...): the same values, written into each seed's buffer slice.
        for _ in range(n_power_iterations):
            self._u.copy_(F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps))
            self._v.copy_(F.normalize(torch.mv(weight_mat.H, self._u), dim=0, eps=self.eps))


def vmappable_copy(module: nn.Module, rng: SeedGenerators) -> nn.Module:
    """A copy of ``module`` to run under vmap: Dropout and spectral norm swapped for their seed forms."""
    template = copy.deepcopy(module)
    for parent in list(template.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in SEED_DROPOUTS:
                setattr(parent, name, SeedDropout(child.p, type(child) is not nn.Dropout, rng))
            elif type(child) is _SpectralNorm:
                child.__class__ = SeedSpectralNorm  # the same buffers and attributes, a vmap-able update
    return template


class StackedNetwork:
    """S seeds' copies of one network as one: parameters and buffers stacked along dim 0, run by vmap.

    Called on (S, B, ...) it returns (S, B, ...), slice ``i`` being seed ``i``'s network applied to
    slice ``i``. The stacked parameters are leaves: one optimizer over them updates every seed.
    """

    def __init__(self, modules: Sequence[nn.Module], rng: SeedGenerators):
        self.template = vmappable_copy(modules[0], rng)
        # Contiguous: each seed's network computes the same function in any layout, and vmap can
        # query only the default one (nets._memory_format reads a weight's layout).
        self.params = {k: torch.stack([dict(m.named_parameters())[k].detach() for m in modules])
                       .contiguous().requires_grad_(p.requires_grad)
                       for k, p in modules[0].named_parameters()}
        self.buffers = {k: torch.stack([dict(m.named_buffers())[k] for m in modules]).contiguous()
                        for k, _ in modules[0].named_buffers()}

    def __call__(self, x: Tensor) -> Tensor:
        return vmap(self._one, randomness="error")(self.params, self.buffers, x)

    def _one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.template, (params, buffers), (x,), strict=True)

    def state(self) -> dict[str, Tensor]:
        """Every stacked parameter and buffer by its state-dict name (for copying seeds in and out)."""
        return {**self.params, **self.buffers}
