"""Replay a training step as one CUDA graph (``--cuda-graphs``)."""

from __future__ import annotations

import torch

from bench.contract import GAN
from bench.errors import UsageError


class StepGraph:
    """Replay an architecture's training step as one CUDA graph (``--cuda-graphs``).

    The first :data:`WARMUP` steps run eagerly on a side stream (as graph capture requires),
    the next full-size batch is captured and then every full-size batch replays the graph:
    one launch per step instead of hundreds. A partial last batch of an epoch runs eagerly.
    Only architectures whose step does not branch on the step index or host state declare
    ``graph_safe = True``; their optimizers are switched to ``capturable`` mode.
    """

    WARMUP = 3

    def __init__(self, gan: GAN, name: str):
        if not getattr(gan, "graph_safe", False):
            raise UsageError(f"architecture {name!r} does not declare its step graph-safe (graph_safe = True); "
                             "run it without --cuda-graphs")
        self.gan = gan
        for opt in gan.optimizers().values():
            for group in opt.param_groups:
                if "capturable" in group:
                    group["capturable"] = True
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side = torch.cuda.Stream()
        self.static_real: torch.Tensor | None = None
        self.static_out: dict[str, torch.Tensor] = {}
        self.eager_steps = 0

    def step(self, real: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        if self.graph is not None and real.shape == self.static_real.shape:
            self.static_real.copy_(real)
            self.graph.replay()
            return {k: v.clone() for k, v in self.static_out.items()}
        same_shape = self.static_real is not None and real.shape == self.static_real.shape
        if self.graph is None and self.eager_steps >= self.WARMUP and same_shape:
            torch.cuda.current_stream().wait_stream(self.side)
            self.static_real.copy_(real)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out = self.gan.train_step(self.static_real, step)
            self.graph.replay()  # capture records without running: this replay is the step
            return {k: v.clone() for k, v in self.static_out.items()}
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            out = self.gan.train_step(real, step)
        torch.cuda.current_stream().wait_stream(self.side)
        if self.static_real is None or self.graph is None and real.shape != self.static_real.shape:
            self.static_real = torch.empty_like(real)
        self.eager_steps += 1
        return out
