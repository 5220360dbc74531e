"""Issue 18: CG must stop at a tolerance and never divide 0 by 0 (exactly solvable systems, many steps)."""

import math

import pytest
import torch

import metadock as md
from metadock.implicit import CGBreakdown, cg_solve, cg_solve_info, implicit_meta_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exactly_solvable_system_many_steps_is_finite_and_exact(dtype):
    # A = 2 I: CG solves it exactly in one step, the residual is exactly 0 and the old code then
    # computed alpha = 0 / 0 = NaN on step 2.
    b = torch.tensor([1.0, -2.0, 0.5, 4.0], dtype=dtype)
    x, iters, resid = cg_solve_info(lambda v: 2.0 * v, b, steps=100)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(x, b / 2, rtol=4 * eps, atol=0)
    assert iters == 1 and resid == 0.0
    # a diagonal operator with 3 distinct eigenvalues: exact in 3 steps in exact arithmetic
    d = torch.tensor([1.0, 1.0, 3.0, 3.0, 5.0], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    x = cg_solve(lambda v: d * v, b, steps=200)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x, b / d, rtol=1e-12, atol=1e-14)


def test_zero_rhs_gives_zero_and_tolerance_stops_early():
    x, iters, resid = cg_solve_info(lambda v: 3.0 * v, torch.zeros(5), steps=50)
    assert torch.equal(x, torch.zeros(5)) and iters == 0 and resid == 0.0
    g = torch.Generator().manual_seed(0)
    m = torch.randn(30, 30, generator=g, dtype=torch.float64)
    a = m @ m.T + torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, generator=g, dtype=torch.float64)
    x, iters, resid = cg_solve_info(lambda v: a @ v, b, steps=1000, tol=1e-8)
    assert resid <= 1e-8 and iters < 1000
    true_rel = float(torch.linalg.vector_norm(b - a @ x) / torch.linalg.vector_norm(b))
    assert true_rel < 1e-6
    # the tolerance is relative: scaling b by a power of two changes nothing but the scale of x
    for s in (2.0**-100, 2.0**100):
        xs, it_s, _ = cg_solve_info(lambda v: a @ v, b * s, steps=1000, tol=1e-8)
        assert it_s == iters
        assert torch.equal(xs / s, x)


def test_breakdown_and_nan_raise_instead_of_returning_numbers():
    b = torch.tensor([1.0, 1.0])
    with pytest.raises(CGBreakdown, match="p'Ap = 0"):
        cg_solve(lambda v: torch.tensor([v[0], -v[1]]), b, steps=5)  # indefinite: p'Ap = 0 at step 1
    with pytest.raises(CGBreakdown, match="NaN or inf"):
        cg_solve(lambda v: v * float("nan"), b, steps=5)
    with pytest.raises(CGBreakdown, match="right-hand side"):
        cg_solve(lambda v: v, torch.tensor([1.0, float("nan")]), steps=5)
    with pytest.raises(ValueError, match="steps must be"):
        cg_solve(lambda v: v, b, steps=-1)
    with pytest.raises(ValueError, match="tolerance"):
        cg_solve(lambda v: v, b, tol=float("nan"))


def test_implicit_meta_grad_with_zero_hessian_and_many_steps():
    # H = 0 (a linear support loss): exact mode's operator is I, solved exactly in one step
    g = torch.tensor([0.3, -1.0, 2.0])
    x = implicit_meta_grad(lambda v: torch.zeros_like(v), g, lam=0.5, mode="exact", cg_steps=100)
    torch.testing.assert_close(x, g, rtol=4e-7, atol=0)
    x = implicit_meta_grad(lambda v: torch.zeros_like(v), g, lam=0.5, mode="faithful", cg_steps=100)
    torch.testing.assert_close(x, g / 2.0)


@pytest.mark.parametrize(
    "mode",
    ["faithful", pytest.param("exact", marks=pytest.mark.slow)],  # exact: 100 HVPs per task
)
def test_imaml_trainer_with_many_cg_steps_gives_finite_meta_gradients(mode, make_dock, make_task):
    dock = make_dock(dtype=torch.float32)
    task = make_task(dtype=torch.float32)
    tr = md.IMAMLTrainer(dock, inner_lr=0.1, inner_steps=2, cg_steps=100, mode=mode)
    grads, loss, _ = tr.meta_gradient(task)
    assert all(torch.isfinite(v).all() for v in grads.values())
    assert any(v.abs().sum() > 0 for v in grads.values())
    # and the same with the dense (masks off) baseline, whose gate gradients are all exactly 0
    tr = md.IMAMLTrainer(dock, inner_lr=0.1, inner_steps=2, cg_steps=100, mode=mode, dense=True)
    rec = tr.meta_step([task, make_task(seed=1, dtype=torch.float32)])
    assert all(torch.isfinite(p).all() for p in dock.parameters())
    assert 1 <= rec["cg_iters"] <= 100 and math.isfinite(rec["cg_residual"])
    if mode == "faithful":  # (1 + c) I + H / (lam + lam_d) is positive definite here: CG converges
        assert rec["cg_residual"] <= 100 * torch.finfo(torch.float32).eps


@pytest.mark.slow  # up to 50 HVPs
def test_exact_mode_runs_cg_to_tolerance_by_default(make_dock, make_task):
    dock, task = make_dock(), make_task()  # float64
    tr = md.IMAMLTrainer(dock, inner_lr=0.1, inner_steps=2, mode="exact")
    assert tr.cg_steps == 50 and md.IMAMLTrainer(dock).cg_steps == 5
    rec = tr.meta_step([task])
    assert rec["cg_residual"] <= 100 * torch.finfo(torch.float64).eps or rec["cg_iters"] == 50
    for bad in (dict(cg_steps=-1), dict(lam=0.0), dict(cg_tol=float("nan")), dict(lam=float("inf"))):
        with pytest.raises(ValueError):
            md.IMAMLTrainer(dock, **bad)


def test_lazy_submodules():
    import importlib

    m = importlib.import_module("metadock")
    assert callable(m.data.glyphs) and callable(m.checkpoint.load)
    with pytest.raises(AttributeError, match="no_such_thing"):
        m.no_such_thing  # noqa: B018
