"""Group DRO, the warm-up/cosine schedule and the checkpoint format that several packages share (issue 20.7)."""

from __future__ import annotations

import math

import pytest
import torch

from paperworks_shared.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from paperworks_shared.dro import GroupDROLoss
from paperworks_shared.optim import warmup_cosine, warmup_cosine_factor


def test_group_dro_matches_the_hand_computed_update():
    dro = GroupDROLoss(3, eta=0.5)
    loss = torch.tensor([1.0, 3.0, 2.0, 4.0])
    group = torch.tensor([0, 0, 1, 1])  # group 2 absent: loss 0, weight only renormalised
    out = dro(loss, group)
    g = torch.tensor([2.0, 3.0, 0.0])
    q = torch.full((3,), 1 / 3) * torch.exp(0.5 * g)
    q = q / q.sum()
    assert torch.allclose(dro.q, q)
    assert out.item() == pytest.approx(float((q * g).sum()))
    # the worst group gets the most weight; eval mode leaves q alone
    assert dro.q.argmax().item() == 1
    dro.eval()
    before = dro.q.clone()
    dro(loss, group)
    assert torch.equal(dro.q, before)


def test_group_dro_gradient_flows_only_through_losses():
    dro = GroupDROLoss(2, eta=0.1)
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    out = dro(w * torch.tensor([1.0, 1.0]), torch.tensor([0, 1]))
    out.backward()
    assert torch.allclose(w.grad, dro.q)


@pytest.mark.parametrize(
    "loss, group, msg",
    [
        (torch.ones(3), torch.tensor([0, 1, 3]), r"in \[0, 3\)"),
        (torch.ones(3), torch.tensor([0, -1, 1]), r"in \[0, 3\)"),
        (torch.ones(3), torch.tensor([0.0, 1.0, 1.0]), "integers"),
        (torch.ones(3), torch.tensor([0, 1]), "same length"),
        (torch.ones(3), None, "group labels"),
    ],
)
def test_group_dro_refuses_bad_groups(loss, group, msg):
    with pytest.raises(ValueError, match=msg):
        GroupDROLoss(3)(loss, group)


def test_warmup_cosine_values():
    assert warmup_cosine_factor(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine_factor(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine_factor(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine_factor(55, 100, 10) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine_factor(100, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine_factor(500, 100, 10) == pytest.approx(0.1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    sched = warmup_cosine(opt, 4, warmup_steps=2, floor=0.0)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 2.0, 2.0, 1.0, 0.0])
    with pytest.raises(ValueError):
        warmup_cosine(opt, 4, warmup_steps=5)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    p = save_checkpoint(
        tmp_path / "a" / "m.pt", {"w": torch.arange(3.0), "n": 2}, kind="student", meta={"arch": "r18"}
    )
    state, meta = load_checkpoint(p, kind="student")
    assert torch.equal(state["w"], torch.arange(3.0)) and state["n"] == 2 and meta == {"arch": "r18"}
    with pytest.raises(CheckpointError, match="holds a 'student' checkpoint, expected 'teacher'"):
        load_checkpoint(p, kind="teacher")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt", kind="student")
    torn = tmp_path / "torn.pt"
    torn.write_bytes(p.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="torn.pt: not a readable torch checkpoint"):
        load_checkpoint(torn, kind="student")
    for k, junk in enumerate(
        [b"\x80\x02]q\x00(K\x01e.", bytes(range(256)) * 4, b"PK\x03\x04" + b"\x00" * 60]
    ):
        bad = tmp_path / f"junk{k}.pt"
        bad.write_bytes(junk)
        with pytest.raises(CheckpointError, match=f"junk{k}.pt"):
            load_checkpoint(bad, kind="student")
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a paperworks checkpoint"):
        load_checkpoint(plain, kind="student")


def test_checkpoint_never_unpickles_arbitrary_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"format": "paperworks-checkpoint", "version": 1, "kind": "x", "state": {"e": Evil()}}, p)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(p, kind="x")
