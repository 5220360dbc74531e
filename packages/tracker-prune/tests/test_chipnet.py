"""ChipNet (DESIGN.md §1.4): hand-computed soft gates / losses, budget loss zero at the budget, a short search."""

import copy
import math

import pytest
import torch

import tracker_prune.chipnet as cn
from tracker_prune import Pruner, slim
from tracker_prune.trackers import build_tracker


def test_logistic_heaviside_crispness_hand_values():
    psi = torch.tensor([0.0, math.log(3.0)])
    zi = cn.logistic(psi, beta=1.0)  # 1/(1+e^0) = 0.5 ; 1/(1+1/3) = 0.75
    assert torch.allclose(zi, torch.tensor([0.5, 0.75]))
    zt = cn.heaviside(zi, gamma=2.0)
    e = math.exp
    want = [1 - e(-1.0) + 0.5 * e(-2.0), 1 - e(-1.5) + 0.75 * e(-2.0)]  # 0.69979, 0.87837
    assert torch.allclose(zt, torch.tensor(want), atol=1e-6)
    assert zt.tolist() == pytest.approx([0.69979, 0.87837], abs=1e-5)
    crisp = cn.crispness(zt, zi)
    assert crisp.item() == pytest.approx(((want[0] - 0.5) ** 2 + (want[1] - 0.75) ** 2) / 2, rel=1e-6)
    # the approximation keeps the end points: H(0) = 0, H(1) = 1 for any gamma
    ends = cn.heaviside(torch.tensor([0.0, 1.0]), gamma=37.0)
    assert torch.allclose(ends, torch.tensor([0.0, 1.0]))
    assert cn.soft_round(torch.tensor([0.5]), 10.0).item() == pytest.approx(0.5)


def test_schedules_follow_notes():
    g = cn.ChipNetGates()
    for _ in range(2):
        g.step_epoch()
    assert g.beta == pytest.approx(1.04) and g.gamma == pytest.approx(4.0) and g.sigma == 20.0
    for _ in range(40):
        g.step_epoch()
    assert g.beta == pytest.approx(1.0 + 42 * 0.02) and g.gamma == 256.0 and g.sigma == 60.0
    cb = cn.ChipNetGates().callback(total_steps=10, epochs=5)
    h = cn.ChipNetGates()
    cb2 = h.callback(10, 5)
    for s in range(10):
        cb2(s)
    assert h.epoch == 5 and cb is not None


def test_budget_loss_zero_at_budget_and_value_by_kind():
    m = build_tracker("vit")
    p = Pruner(m, "chipnet", budget=0.5, budget_kind="params")
    cost = p.element_cost("params")
    # put exactly half of every unit's gates far on and half far off: V = 0.5 for any cost kind
    with torch.no_grad():
        for u in p.units.values():
            flat = torch.full((u.zeta.numel(),), -50.0)
            flat[: u.zeta.numel() // 2] = 50.0
            u.zeta.copy_(flat.reshape(u.zeta.shape))
    p.chipnet.gamma, p.chipnet.sigma = 256.0, 60.0
    zi, zt = cn.soft_terms(p.units, p.chipnet)
    v = cn.budget_value(zt, cost, p.chipnet.sigma)
    want = sum(cost[n] * (u.zeta.numel() // 2) for n, u in p.units.items()) / sum(
        cost[n] * u.zeta.numel() for n, u in p.units.items()
    )
    assert v.item() == pytest.approx(want, abs=1e-6)
    p.budget = want
    assert p.regularizer().item() == pytest.approx(0.0, abs=1e-6)  # budget and crispness both ~0
    p.budget = want - 0.1
    assert p.regularizer().item() == pytest.approx(30 * 0.1**2, rel=1e-3)


def test_chipnet_threshold_binary_search_meets_params_budget():
    torch.manual_seed(0)
    m = build_tracker("hybrid")
    p = Pruner(m, "chipnet", budget=0.3, budget_kind="params")
    with torch.no_grad():
        for u in p.units.values():
            u.zeta.normal_(0, 3)
    cost = p.element_cost("params")
    masks = p.masks(0.3, kind="params", min_keep=0)
    kept = sum(cost[n] * int(masks[n].sum()) for n in masks)
    total = sum(cost[n] * masks[n].numel() for n in masks)
    assert kept / total <= 0.3
    # adding the best excluded gate would break the budget: the threshold is tight
    zt = p.importance()
    best_out = max((float(zt[n][~masks[n]].max()), n) for n in masks if (~masks[n]).any())
    assert (kept + cost[best_out[1]]) / total > 0.3 or best_out[0] == min(
        float(zt[n][masks[n]].min()) for n in masks if masks[n].any()
    )
    ch = p.masks(0.3, kind="channels", min_keep=0)
    n_all = sum(v.numel() for v in ch.values())
    assert sum(int(v.sum()) for v in ch.values()) >= n_all - int(0.7 * n_all)


def test_chipnet_needs_budget_and_known_kind():
    with pytest.raises(ValueError, match="budget"):
        Pruner(build_tracker("cnn"), "chipnet")
    with pytest.raises(ValueError, match="kind"):
        Pruner(build_tracker("cnn"), "chipnet", budget=0.5, budget_kind="volume")
    with pytest.raises(ValueError, match="threshold"):
        Pruner(build_tracker("cnn"), "l1").masks(0.5, threshold=0.5)


@pytest.mark.parametrize(("arch", "kind"), [("vit", "params"), ("cnn", "channels")])
def test_short_search_reaches_budget_and_slims_exactly(arch, kind):
    """Distil the dense outputs with ChipNet's losses for 100 steps: the 0.5-thresholded gates land
    within 0.06 of the requested budget, and the resulting masked model slims exactly."""
    torch.manual_seed(0)
    m = build_tracker(arch).eval()
    dense = copy.deepcopy(m)
    z, x = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref = dense(z, x)["score"]
    b = 0.3
    p = Pruner(m, "chipnet", budget=b, budget_kind=kind)
    opt = torch.optim.Adam(p.gate_parameters(), lr=0.1)
    cb = p.search_callback(100)
    for s in range(100):
        loss = ((m(z, x)["score"] - ref) ** 2).mean() + p.regularizer()
        opt.zero_grad()
        loss.backward()
        opt.step()
        cb(s)
    cost = p.element_cost(kind)
    zt = p.importance()
    at_half = sum(cost[n] * int((zt[n] >= 0.5).sum()) for n in zt) / sum(cost[n] * zt[n].numel() for n in zt)
    assert abs(at_half - b) < 0.06, at_half
    half = p.masks(b, kind=kind, min_keep=0, threshold=0.5)
    assert all(torch.equal(half[n].flatten(), zt[n].flatten() >= 0.5) for n in zt)
    masks = p.masks(b, kind=kind, min_keep=1)
    p.apply(masks, fold_scales=True)
    m64 = m.double()
    s = slim(m64)
    z64, x64 = z.double(), x.double()
    assert torch.allclose(s(z64, x64)["box"], m64(z64, x64)["box"], atol=1e-8)
