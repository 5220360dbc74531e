import pytest
import torch

import metadock as md
from metadock.implicit import cg_solve, hvp_fn, implicit_meta_grad


def test_cg_solves_spd_systems():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x = cg_solve(lambda v: a @ v, b, steps=100, tol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-9)


def test_hvp_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, dtype=torch.float64, generator=g)
    v = torch.randn(5, dtype=torch.float64, generator=g)
    f = lambda p: (p[0].sin() * p[0] ** 2).sum() + (p[0][:3] ** 3).sum()
    hv = hvp_fn(f, [w])(v)
    eps = 1e-6

    def grad(x):
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(f([x]), x)[0]

    fd = (grad(w + eps * v) - grad(w - eps * v)) / (2 * eps)
    torch.testing.assert_close(hv, fd, rtol=1e-6, atol=1e-7)


def _ridge():
    g = torch.Generator().manual_seed(2)
    xs, ys = (
        torch.randn(8, 4, generator=g, dtype=torch.float64),
        torch.randn(8, generator=g, dtype=torch.float64),
    )
    xq, yq = (
        torch.randn(6, 4, generator=g, dtype=torch.float64),
        torch.randn(6, generator=g, dtype=torch.float64),
    )
    theta = torch.randn(4, generator=g, dtype=torch.float64)
    return xs, ys, xq, yq, theta


def test_exact_cg_meta_gradient_equals_closed_form_on_ridge_regression():
    """Inner: phi* = argmin 1/2|Xs phi - ys|^2 + lam/2 |phi - theta|^2 (closed form); the implicit
    gradient (I + H/lam)^-1 grad L_Q(phi*) must equal d L_Q(phi*(theta)) / d theta by autograd."""
    xs, ys, xq, yq, theta = _ridge()
    lam = 0.7
    h = xs.T @ xs
    phi_star = lambda th: torch.linalg.solve(h + lam * torch.eye(4, dtype=th.dtype), xs.T @ ys + lam * th)
    lq = lambda p: 0.5 * ((xq @ p - yq) ** 2).sum()
    th = theta.clone().requires_grad_(True)
    truth = torch.autograd.grad(lq(phi_star(th)), th)[0]
    p = phi_star(theta).detach().requires_grad_(True)
    gq = torch.autograd.grad(lq(p), p)[0]
    hvp = hvp_fn(lambda ps: 0.5 * ((xs @ ps[0] - ys) ** 2).sum(), [phi_star(theta).detach()])
    got = implicit_meta_grad(hvp, gq, lam, mode="exact", cg_steps=50, tol=1e-14)
    torch.testing.assert_close(got, truth, rtol=1e-6, atol=1e-9)
    # the faithful (official, damped) operator gives a different, documented answer
    faithful = implicit_meta_grad(hvp, gq, lam, mode="faithful", cg_steps=50, tol=1e-14)
    a = 2.0 * torch.eye(4, dtype=torch.float64) + h / (lam + 10.0)
    torch.testing.assert_close(faithful, torch.linalg.solve(a, gq), rtol=1e-6, atol=1e-9)
    assert not torch.allclose(faithful, truth, rtol=1e-3)


def test_exact_imaml_inner_loop_converges_to_the_proximal_solution():
    """exact mode puts lam (phi - theta) into every inner step; with enough steps on a convex problem
    phi approaches phi*; the faithful pull-back does not solve that problem."""
    xs, ys, _, _, theta = _ridge()
    lam, lr = 0.7, 0.02
    phi = theta.clone()
    for _ in range(3000):
        phi = phi - lr * (xs.T @ (xs @ phi - ys) + lam * (phi - theta))
    star = torch.linalg.solve(xs.T @ xs + lam * torch.eye(4, dtype=torch.float64), xs.T @ ys + lam * theta)
    torch.testing.assert_close(phi, star, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("adapt_gates", [True, False])
def test_torch_func_and_higher_agree_on_second_order_maml(adapt_gates, make_dock, make_task):
    pytest.importorskip("higher")
    task = make_task()
    grads = {}
    for backend in ("torch.func", "higher"):
        dock = make_dock(seed=4)
        tr = md.MAMLTrainer(dock, inner_lr=0.1, inner_steps=3, backend=backend, adapt_gates=adapt_gates)
        grads[backend], _, _ = tr.meta_gradient(task)
    for n in grads["torch.func"]:
        torch.testing.assert_close(grads["torch.func"][n], grads["higher"][n], rtol=1e-7, atol=1e-10)
    dock = make_dock(seed=4)
    fo, _, _ = md.MAMLTrainer(
        dock, inner_lr=0.1, inner_steps=3, first_order=True, adapt_gates=adapt_gates
    ).meta_gradient(task)
    diff = max(float((fo[n] - grads["torch.func"][n]).abs().max()) for n in fo)
    assert diff > 1e-6, "first-order MAML must differ from second-order"
    fo_h, _, _ = md.MAMLTrainer(
        make_dock(seed=4),
        inner_lr=0.1,
        inner_steps=3,
        first_order=True,
        backend="higher",
        adapt_gates=adapt_gates,
    ).meta_gradient(task)
    for n in fo:
        torch.testing.assert_close(fo[n], fo_h[n], rtol=1e-7, atol=1e-10)


def test_vmap_over_tasks_equals_the_loop(make_dock, make_task):
    tasks = [make_task(seed=s) for s in range(3)]
    d1, d2 = make_dock(seed=5), make_dock(seed=5)
    t1 = md.MAMLTrainer(d1, inner_lr=0.1, inner_steps=2, outer_lr=0.01)
    t2 = md.MAMLTrainer(d2, inner_lr=0.1, inner_steps=2, outer_lr=0.01, vmap_tasks=True)
    t1.meta_step(tasks)
    t2.meta_step(tasks)
    for (_n, a), (_, b) in zip(d1.named_parameters(), d2.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)  # the meta-gradients
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # (Adam amplifies rounding near zero)


def test_imaml_higher_backend_adapts_like_torch_func(make_dock, make_task):
    pytest.importorskip("higher")
    task = make_task()
    res = {}
    for backend in ("torch.func", "higher"):
        tr = md.IMAMLTrainer(make_dock(seed=6), inner_lr=0.05, inner_steps=3, backend=backend, mode="exact")
        res[backend] = tr.adapt(task).params
    for n in res["higher"]:
        torch.testing.assert_close(
            res["higher"][n].detach(), res["torch.func"][n].detach(), rtol=1e-9, atol=1e-12
        )


def test_active_fraction_tracks_the_budget(make_dock, make_task):
    """Meta-training with the budget loss drives the remaining kernel fraction to about b."""
    task = make_task()
    for budget in (0.25, 0.6):
        dock = make_dock(budget=budget, hidden=8, seed=7)
        tr = md.IMAMLTrainer(dock, inner_steps=1, inner_lr=0.01, outer_lr=0.01, cg_steps=2, meta_batch=1)
        tr.total_steps = 60
        for i in range(60):
            tr.step_count = i
            tr.meta_step([task])
        r = float(dock.remaining(dock.meta_params(), ste=False))
        assert abs(r - budget) < 0.06, (budget, r)
