"""Realised cost of a model: parameters, FLOPs (torch FlopCounterMode, 2*MAC) and CPU latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .units import GATED_TYPES


def count_params(model: nn.Module, exclude_gates: bool = True) -> int:
    """Number of parameters; gate parameters (zeta) are not counted by default."""
    gates = {id(u.zeta) for u in model.modules() if isinstance(u, GATED_TYPES)} if exclude_gates else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in gates)


@torch.no_grad()
def count_flops(model: nn.Module, inputs: tuple) -> int:
    """FLOPs of one forward pass as counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    was = model.training
    model.eval()
    with FlopCounterMode(display=False) as fc:
        model(*inputs)
    model.train(was)
    return int(fc.get_total_flops())


@torch.inference_mode()
def latency_ms(model: nn.Module, inputs: tuple, warmup: int = 5, runs: int = 30) -> float:
    """Median wall-clock milliseconds of a forward pass (batch as given, current thread count)."""
    was = model.training
    model.eval()
    for _ in range(warmup):
        model(*inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(*inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    model.train(was)
    return statistics.median(times)


def cost_report(model: nn.Module, inputs: tuple, runs: int = 30) -> dict:
    return {
        "params": count_params(model),
        "flops": count_flops(model, inputs),
        "latency_ms": latency_ms(model, inputs, runs=runs),
    }
