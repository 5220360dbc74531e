"""Implicit meta-gradients (iMAML, Rajeswaran et al. 2019) with conjugate gradient.

exact mode:    solve (I + H/lam) x = g                       (true iMAML, proximal term in the inner loss)
faithful mode: solve ((1 + c) I + H/(lam + lam_d)) x = g     (the official MetaDOCK / imaml_dev operator)
H is the Hessian of the support loss at the adapted parameters, applied by double backward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def cg_solve(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, steps: int = 5, tol: float = 0.0
) -> torch.Tensor:
    """Conjugate gradient for A x = b with A symmetric positive definite, x0 = 0 (as the official code)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r @ r
    for _ in range(steps):
        if tol and rs.sqrt() <= tol:
            break
        Ap = matvec(p)
        alpha = rs / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = r @ r
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


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
) -> torch.Tensor:
    """Solve the iMAML linear system for the outer gradient g (flat)."""
    if lam <= 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    if mode == "exact":
        matvec = lambda v: v + hvp(v) / lam
    elif mode == "faithful":
        matvec = lambda v: (1.0 + cg_damping) * v + hvp(v) / (lam + lam_damping)
    else:
        raise ValueError(f"mode must be 'exact' or 'faithful', got {mode!r}")
    return cg_solve(matvec, g, steps=cg_steps, tol=tol)
