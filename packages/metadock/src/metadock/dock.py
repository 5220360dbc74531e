"""`MetaDOCK`: wrap any conv net with per-kernel gates and run the paper's two-step inner update.

The meta-parameters theta are the network's weights AND the gate logits psi (the gates' initial
values are meta-learned). Inner loop (paper Sec. 3.2, official `learn_on_data(inner_alg='bilevel')`):

    Step A  g_W   = d/dW   CE(f(S; W * 1[psi>0]))                      (gates fixed)
    Step B  g_psi = d/dpsi CE(f(S; W * STE(psi))) + w_b(t)(r(psi)-b)^2 + l1 |psi|_1   (weights frozen)
    phi <- phi - alpha [g_W ; g_psi]        (one SGD step over both, grads taken at the same point)

Everything here is functional (`torch.func.functional_call` over a dict of tensors), so theta is
never mutated by adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .gates import GatedConv2d, binarize_ste, gated_convs, mask_mode
from .models import check_transductive_bn

Params = dict[str, torch.Tensor]


@dataclass
class BudgetSchedule:
    """w_b(t) and b(t) of the official code: linear weight ramp w_b(t) = w * t / T; optional b(t) = max(b, exp(-4t/T))."""

    budget: float
    weight: float = 50.0
    weight_schedule: str | None = "linear"
    budget_schedule: str | None = None

    def weight_at(self, t: int, total: int) -> float:
        if self.weight_schedule is None:
            return self.weight
        if self.weight_schedule == "linear":
            return self.weight * min(1.0, t / max(1, total))
        raise ValueError(f"unknown budget weight schedule {self.weight_schedule!r} (None or 'linear')")

    def budget_at(self, t: int, total: int) -> float:
        if self.budget_schedule is None:
            return self.budget
        if self.budget_schedule == "exp":
            return max(self.budget, math.exp(-4 * t / max(1, total)))
        raise ValueError(f"unknown budget schedule {self.budget_schedule!r} (None or 'exp')")


class MetaDOCK(nn.Module):
    """Per-task dynamic kernel selection around a conv network `net`.

    Every nn.Conv2d of `net` is replaced (in place) by a `GatedConv2d` with a gate per
    (out, in) kernel (granularity="kernel") or per filter ("filter").
    """

    def __init__(
        self,
        net: nn.Module,
        budget: float = 0.5,
        granularity: str = "kernel",
        budget_weight: float = 50.0,
        budget_weight_schedule: str | None = "linear",
        budget_schedule: str | None = None,
        l1: float = 1e-6,
        init_scale: float = 0.01,
        beta: float = 1.0,
    ):
        super().__init__()
        if not (isinstance(budget, (int, float)) and 0 < budget <= 1):
            raise ValueError(f"budget must be in (0, 1], got {budget!r}")
        if granularity not in ("kernel", "filter"):
            raise ValueError(f"granularity must be 'kernel' or 'filter', got {granularity!r}")
        check_transductive_bn(net)
        n_conv = 0
        for _name, mod in list(net.named_modules()):
            for child_name, child in list(mod.named_children()):
                if isinstance(child, nn.Conv2d):
                    setattr(mod, child_name, GatedConv2d(child, granularity, init_scale, beta))
                    n_conv += 1
        if n_conv == 0:
            raise ValueError(
                f"{type(net).__name__} has no nn.Conv2d layers: MetaDOCK gates convolution kernels"
            )
        self.net = net
        self.granularity = granularity
        self.schedule = BudgetSchedule(float(budget), budget_weight, budget_weight_schedule, budget_schedule)
        self.l1 = l1

    @property
    def budget(self) -> float:
        return self.schedule.budget

    # --- parameter bookkeeping -------------------------------------------------------------
    def meta_params(self) -> Params:
        """theta: every trainable tensor of the wrapped net, gates included, by name."""
        return {n: p for n, p in self.named_parameters()}

    @staticmethod
    def is_gate(name: str) -> bool:
        return name.endswith(".psi")

    def split(self, params: Params) -> tuple[Params, Params]:
        """(weights, gates) partition of a parameter dict."""
        return {k: v for k, v in params.items() if not self.is_gate(k)}, {
            k: v for k, v in params.items() if self.is_gate(k)
        }

    def total_kernels(self) -> int:
        return sum(c.out_channels * c.in_channels for _, c in gated_convs(self))

    # --- functional forward and losses ------------------------------------------------------
    def fforward(self, params: Params, x: torch.Tensor, mode: str = "ste") -> torch.Tensor:
        """Forward with explicit parameters and mask mode ("ste" | "hard" | "off")."""
        with mask_mode(self, mode):
            return functional_call(self, params, (x,))

    def forward(self, x):
        return self.net(x)

    def remaining(self, params: Params, ste: bool = True) -> torch.Tensor:
        """r(psi): fraction of active kernels over all gated convs (differentiable through the STE)."""
        counts: list[torch.Tensor] = []
        den = 0
        for name, conv in gated_convs(self):
            psi = params[f"{name}.psi"]
            m = binarize_ste(psi, conv.beta) if ste else (psi > 0).to(psi.dtype)
            counts.append(m.expand(conv.out_channels, conv.in_channels).sum())
            den += conv.out_channels * conv.in_channels
        if not counts:
            raise ValueError("the network has no gated convolutions: nothing to count")
        num = counts[0]
        for c in counts[1:]:
            num = num + c
        return num / den

    def budget_loss(self, params: Params, t: int = 1, total: int = 1) -> torch.Tensor:
        """w_b(t) (r(psi) - b(t))^2 + l1 * sum |psi| (the gate-only terms of loss B)."""
        gates = [params[n] for n in params if self.is_gate(n)]
        r = self.remaining(params)
        wb = self.schedule.weight_at(t, total)
        b = self.schedule.budget_at(t, total)
        return wb * (r - b) ** 2 + self.l1 * sum(g.abs().sum() for g in gates)

    # --- the two-step inner update -------------------------------------------------------------
    def inner_grads(
        self,
        params: Params,
        x: torch.Tensor,
        y: torch.Tensor,
        t: int = 1,
        total: int = 1,
        create_graph: bool = False,
        gates: bool = True,
    ) -> Params:
        """Gradients of the two-step update at `params`: W from the hard-mask CE (loss A), psi from
        CE through the STE + budget + L1 (loss B). The two never mix: loss B never moves W."""
        w, g = self.split(params)
        loss_a = F.cross_entropy(self.fforward(params, x, "hard"), y)
        grads_w = torch.autograd.grad(loss_a, list(w.values()), create_graph=create_graph)
        out = dict(zip(w.keys(), grads_w))
        if gates:
            loss_b = F.cross_entropy(self.fforward(params, x, "ste"), y) + self.budget_loss(params, t, total)
            grads_g = torch.autograd.grad(loss_b, list(g.values()), create_graph=create_graph)
            out.update(zip(g.keys(), grads_g))
        else:
            out.update({k: torch.zeros_like(v) for k, v in g.items()})
        return out

    def adapt(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        steps: int = 16,
        lr: float = 5e-3,
        t: int = 1,
        total: int = 1,
        prox_lam: float = 0.0,
        pullback_lam: float = 0.0,
        adapt_gates: bool = True,
        params: Params | None = None,
        create_graph: bool = False,
        step_fn: Callable | None = None,
    ) -> AdaptedTask:
        """Adapt to one task's support set (x, y) without touching theta; returns the task model.

        prox_lam > 0 adds the proximal gradient lam (phi - theta) in every step (exact iMAML inner
        problem); pullback_lam > 0 applies the official single pull-back phi -= lr*lam*(phi - theta).
        adapt_gates=False keeps the meta-learned mask for every task (the "shared mask" ablation).
        """
        theta = params if params is not None else {k: v.detach() for k, v in self.meta_params().items()}
        phi = {k: (v if create_graph else v.detach().clone().requires_grad_(True)) for k, v in theta.items()}
        for _ in range(steps):
            grads = self.inner_grads(phi, x, y, t, total, create_graph=create_graph, gates=adapt_gates)
            new = {}
            for k, v in phi.items():
                g = grads[k]
                if prox_lam:
                    g = g + prox_lam * (v - theta[k])
                nv = v - lr * g
                new[k] = nv if create_graph else nv.detach().requires_grad_(True)
            phi = new
        if pullback_lam:
            phi = {k: v - lr * pullback_lam * (v - theta[k]) for k, v in phi.items()}
            if not create_graph:
                phi = {k: v.detach().requires_grad_(True) for k, v in phi.items()}
        return AdaptedTask(self, phi)


class AdaptedTask:
    """One task's adapted parameters phi (weights + gates); callable like a model (hard masks)."""

    def __init__(self, dock: MetaDOCK, params: Params):
        self.dock = dock
        self.params = params

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.dock.fforward(self.params, x, "hard")

    def remaining(self) -> float:
        return float(self.dock.remaining(self.params, ste=False))

    def masks(self) -> dict[str, torch.Tensor]:
        """Hard (out, in) kernel masks per gated conv."""
        out = {}
        for name, conv in gated_convs(self.dock):
            m = (self.params[f"{name}.psi"].detach() > 0).to(conv.weight.dtype)
            out[name] = m.expand(conv.out_channels, conv.in_channels).clone()
        return out

    def export(self, dense_slim: bool = True) -> nn.Module:
        """A compact plain-PyTorch model for this task; see `metadock.export.export_task`."""
        from .export import export_task

        return export_task(self, dense_slim=dense_slim)
