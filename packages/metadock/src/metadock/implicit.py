"""Implicit meta-gradients (iMAML, Rajeswaran et al. 2019) with conjugate gradient.

exact mode:    solve (I + H/lam) x = g                       (true iMAML, proximal term in the inner loss)
faithful mode: solve ((1 + c) I + H/(lam + lam_d)) x = g     (the official MetaDOCK / imaml_dev operator)
H is the Hessian of the support loss at the adapted parameters, applied by double backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class CGBreakdown(ArithmeticError):
    """CG cannot continue: the operator is not positive definite along a search direction, or a
    matvec / right-hand side is not finite. Raised instead of returning NaN or inf numbers."""


def cg_solve_info(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int = 5, tol: float = 0.0
) -> tuple[torch.Tensor, int, float]:
    """Conjugate gradient for A x = b (A symmetric), x0 = 0 (as the official code).

    Returns (x, iterations, relative residual |b - A x| / |b| as tracked by CG). Stops after `steps`
    iterations, or as soon as the relative residual is <= `tol`, or when the residual is exactly 0
    (an exactly solved system: continuing would divide 0 by 0). The system is solved for b / |b| and
    the answer scaled back (CG is linear in b), so tiny or huge gradients neither underflow nor
    overflow. b = 0 gives x = 0. A direction with p'Ap = 0, or any non-finite number, raises
    `CGBreakdown` naming the step: a solve never returns NaN or inf."""
    if steps < 0:
        raise ValueError(f"CG steps must be >= 0, got {steps}")
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"CG tolerance must be a finite number >= 0, got {tol}")
    scale = torch.linalg.vector_norm(b)
    if not torch.isfinite(scale):
        raise CGBreakdown("CG right-hand side (the outer gradient) holds NaN or inf values")
    x = torch.zeros_like(b)
    if scale == 0:
        return x, 0, 0.0
    r = b / scale
    p = r.clone()
    rs = r @ r
    it = 0
    while it < steps and rs > 0 and rs.sqrt() > tol:
        it += 1
        Ap = matvec(p)
        pap = p @ Ap
        if not torch.isfinite(pap):
            raise CGBreakdown(f"CG step {it}: the operator returned NaN or inf (p'Ap = {float(pap)})")
        if pap == 0:
            raise CGBreakdown(
                f"CG step {it}: p'Ap = 0 with relative residual {float(rs.sqrt()):.3g}: the operator "
                "is singular or not positive definite along the search direction"
            )
        alpha = rs / pap
        if not torch.isfinite(alpha):
            raise CGBreakdown(f"CG step {it}: step size overflowed (p'Ap = {float(pap):.3g})")
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = r @ r
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x * scale, it, float(rs.sqrt())


def cg_solve(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int = 5, tol: float = 0.0
) -> torch.Tensor:
    """Conjugate gradient for A x = b with A symmetric positive definite, x0 = 0 (as the official code).

    At most `steps` iterations; stops early once |r| / |b| <= `tol` or the residual is exactly 0.
    See `cg_solve_info` for the iteration count and final residual."""
    return cg_solve_info(matvec, b, steps, tol)[0]


def hvp_fn(loss_fn: Callable[[list[torch.Tensor]], torch.Tensor], params: list[torch.Tensor]) -> Callable:
    """v -> H v for H = Hessian of loss_fn at params (flat vectors), by double backward."""
    params = [p.detach().requires_grad_(True) for p in params]
    loss = loss_fn(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])

    def hvp(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat, params, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.cat(
            [(h if h is not None else torch.zeros_like(p)).reshape(-1) for h, p in zip(hv, params)]
        ).detach()

    return hvp


def implicit_meta_grad(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    g: torch.Tensor,
    lam: float,
    mode: str = "exact",
    cg_steps: int = 5,
    cg_damping: float = 1.0,
    lam_damping: float = 10.0,
    tol: float = 0.0,
    info: bool = False,
):
    """Solve the iMAML linear system for the outer gradient g (flat).

    CG runs at most `cg_steps` iterations and stops once |r| / |g| <= `tol`. With `info=True` returns
    (x, iterations, relative residual) instead of x."""
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be > 0, got {lam}")
    if mode == "exact":
        matvec = lambda v: v + hvp(v) / lam
    elif mode == "faithful":
        matvec = lambda v: (1.0 + cg_damping) * v + hvp(v) / (lam + lam_damping)
    else:
        raise ValueError(f"mode must be 'exact' or 'faithful', got {mode!r}")
    out = cg_solve_info(matvec, g, steps=cg_steps, tol=tol)
    return out if info else out[0]
