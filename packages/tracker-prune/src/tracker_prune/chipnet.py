"""ChipNet: budget-aware pruning with continuous Heaviside approximations (Tiwari et al., ICLR 2021).

Notes §1.4, applied to every gate type of this package (attention head-dims, MLP hidden units,
conv channels after BN). Each gate keeps one real parameter psi (stored in the unit's ``zeta``):

* logistic           ``zeta_i = 1 / (1 + exp(-beta * psi))``                      (ChipNet eq. 2)
* continuous Heaviside ``zeta_t = 1 - exp(-gamma * zeta_i) + zeta_i * exp(-gamma)``  (eq. 3)
* crispness loss     ``L_c = mean((zeta_t - zeta_i) ** 2)``                          (eq. 5)
* soft rounding      ``R(z) = 1 / (1 + exp(-sigma * (z - 0.5)))`` for counting kept gates
* budget loss        ``L_b = (V(zeta) - V_c) ** 2`` with ``V`` the soft kept fraction of the
  chosen cost kind (channels / params / FLOPs)                                        (eq. 6)
* total              ``L = L_task + 30 * L_b + 10 * L_c``

Because every prunable unit of this package sits between fixed (residual-stream) widths, the cost
of a unit is *linear* in its kept count, so ``V`` per kind is ``sum_u c_u * sum_j R(zeta_t[u, j]) /
sum_u c_u * n_u`` with the per-element costs ``c_u`` that `Pruner.element_cost` already computes
(ChipNet's bilinear ``rem_l * rem_prev`` term never arises: no two prunable widths meet in one
weight). Thresholding (DESIGN.md §1.4): channels ``thr = min(sorted(zeta_t)[int((1 - V_c) n)], 0.9)``;
params / FLOPs: binary search on the threshold until the realised ratio is <= V_c.
"""

from __future__ import annotations

import math

import torch

# ChipNet defaults (DESIGN.md §1.4; transmuteAI/ChipNet pruning.py)
BUDGET_WEIGHT = 30.0
CRISP_WEIGHT = 10.0


def logistic(psi: torch.Tensor, beta: float) -> torch.Tensor:
    """``zeta_i = 1 / (1 + exp(-beta psi))``."""
    return torch.sigmoid(beta * psi)


def heaviside(zeta_i: torch.Tensor, gamma: float) -> torch.Tensor:
    """Continuous Heaviside approximation ``1 - exp(-gamma z) + z exp(-gamma)``: 0 -> 0, 1 -> 1."""
    return 1.0 - torch.exp(-gamma * zeta_i) + zeta_i * math.exp(-gamma)


def crispness(zeta_t: torch.Tensor, zeta_i: torch.Tensor) -> torch.Tensor:
    """``mean((zeta_t - zeta_i)^2)``: zero only where gates are crisp (0 or 1)."""
    return ((zeta_t - zeta_i) ** 2).mean()


def soft_round(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """``R(z) = sigmoid(sigma (z - 0.5))``: a differentiable count of gates above one half."""
    return torch.sigmoid(sigma * (z - 0.5))


class ChipNetGates:
    """Holds ChipNet's annealed temperatures and maps a unit's psi to its soft gate ``zeta_t``.

    Schedules per epoch (DESIGN.md §1.4): beta from 1, ``+0.1 / b_inc`` (b_inc = 5), max 6; gamma from 2,
    ``* 2 ** (1 / g_inc)`` (g_inc = 2), max 256; sigma from 10, +5, max 60. A short search maps
    its steps onto ``epochs`` virtual epochs (see `callback`).
    """

    def __init__(
        self,
        beta: float = 1.0,
        gamma: float = 2.0,
        sigma: float = 10.0,
        b_inc: float = 5.0,
        g_inc: float = 2.0,
        beta_max: float = 6.0,
        gamma_max: float = 256.0,
        sigma_step: float = 5.0,
        sigma_max: float = 60.0,
    ):
        self.beta, self.gamma, self.sigma = beta, gamma, sigma
        self.b_inc, self.g_inc = b_inc, g_inc
        self.beta_max, self.gamma_max = beta_max, gamma_max
        self.sigma_step, self.sigma_max = sigma_step, sigma_max
        self.epoch = 0

    def soft_gate(self, psi: torch.Tensor) -> torch.Tensor:
        return heaviside(logistic(psi, self.beta), self.gamma)

    __call__ = soft_gate

    def step_epoch(self) -> None:
        self.epoch += 1
        self.beta = min(self.beta + 0.1 / self.b_inc, self.beta_max)
        self.gamma = min(self.gamma * 2 ** (1.0 / self.g_inc), self.gamma_max)
        self.sigma = min(self.sigma + self.sigma_step, self.sigma_max)

    def callback(self, total_steps: int, epochs: int = 20):
        """A per-step callable that advances the schedules ``epochs`` times over ``total_steps``."""
        if total_steps < 1 or epochs < 1:
            raise ValueError("total_steps and epochs must be >= 1")

        def on_step(step: int) -> None:  # step is 0-based and already taken
            while self.epoch < min(epochs, (step + 1) * epochs // total_steps):
                self.step_epoch()

        return on_step


def soft_terms(units: dict, gates: ChipNetGates) -> tuple[dict, dict]:
    """Per unit (zeta_i, zeta_t), flattened."""
    zi, zt = {}, {}
    for n, u in units.items():
        zi[n] = logistic(u.zeta, gates.beta).flatten()
        zt[n] = heaviside(zi[n], gates.gamma)
    return zi, zt


def budget_value(zeta_t: dict, cost: dict, sigma: float) -> torch.Tensor:
    """Soft kept fraction ``V = sum_u c_u sum_j R(zeta_t) / sum_u c_u n_u`` of one cost kind."""
    num = sum(cost[n] * soft_round(z, sigma).sum() for n, z in zeta_t.items())
    den = sum(cost[n] * z.numel() for n, z in zeta_t.items())
    return num / den


def chipnet_loss(units: dict, gates: ChipNetGates, cost: dict, budget: float) -> torch.Tensor:
    """``30 * (V - V_c)^2 + 10 * crispness`` (the ChipNet terms added to the task loss)."""
    zi, zt = soft_terms(units, gates)
    v = budget_value(zt, cost, gates.sigma)
    crisp = crispness(torch.cat(list(zt.values())), torch.cat(list(zi.values())))
    return BUDGET_WEIGHT * (v - budget) ** 2 + CRISP_WEIGHT * crisp


def threshold_masks(scores: dict, cost: dict, budget: float, kind: str, iters: int = 40) -> dict:
    """Binary masks ``zeta_t >= thr`` over all pooled gates (ChipNet thresholding, DESIGN.md §1.4)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    if kind == "channels":
        srt = torch.sort(flat).values
        idx = min(int((1 - budget) * len(srt)), len(srt) - 1)
        thr = min(float(srt[idx]), 0.9)
    else:
        total = sum(cost[n] * s.numel() for n, s in scores.items())

        def ratio(t: float) -> float:
            return sum(cost[n] * int((s >= t).sum()) for n, s in scores.items()) / total

        lo, hi = float(flat.min()) - 1e-6, float(flat.max()) + 1e-6  # ratio(lo) = 1, ratio(hi) = 0
        if ratio(lo) <= budget:
            hi = lo
        for _ in range(iters):
            mid = (lo + hi) / 2
            if ratio(mid) <= budget:
                hi = mid
            else:
                lo = mid
        thr = hi
        # exact: lower the threshold to the smallest score still keeping the ratio <= budget
        above = flat[flat >= thr]
        if above.numel():
            thr = float(above.min())
    return {n: s >= thr for n, s in scores.items()}
