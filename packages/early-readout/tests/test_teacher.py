"""The teacher side: Group DRO is the shared `paperworks_shared.dro.GroupDROLoss`; teacher files use the
shared checkpoint format."""

import pytest
import torch
from er_helpers import loader, planted_data

from early_readout.errors import CheckpointError
from early_readout.models import MLP
from early_readout.teacher import load_teacher, save_teacher, train_teacher


def test_group_dro_teacher_equals_the_shared_loss_step_by_step():
    """One SGD step of train_teacher(method='group_dro') equals a hand step with GroupDROLoss."""
    from paperworks_shared.dro import GroupDROLoss

    x, y, g, _ = planted_data(64, 8)
    torch.manual_seed(0)
    a = MLP(2, 2, (8,))
    b = MLP(2, 2, (8,))
    b.load_state_dict(a.state_dict())
    dl = loader(x, y, g, batch_size=64, shuffle=False)
    train_teacher(
        a, dl, 1, "group_dro", lr=0.5, momentum=0.0, weight_decay=0.0, n_groups=4, dro_eta=1.0, progress=False
    )
    dro = GroupDROLoss(4, eta=1.0)
    opt = torch.optim.SGD(b.parameters(), lr=0.5)
    per = torch.nn.functional.cross_entropy(b(x), y.long(), reduction="none")
    dro(per, g.long()).backward()
    opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    # and it is not plain ERM: the same step on the mean loss lands elsewhere
    c = MLP(2, 2, (8,))
    torch.manual_seed(0)
    c = MLP(2, 2, (8,))
    train_teacher(
        c,
        loader(x, y, g, batch_size=64, shuffle=False),
        1,
        "erm",
        lr=0.5,
        momentum=0.0,
        weight_decay=0.0,
        progress=False,
    )
    assert any(not torch.allclose(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_group_dro_refuses_group_ids_out_of_range():
    x, y, g, _ = planted_data(32, 4)
    with pytest.raises(ValueError, match=r"group ids must be in \[0, 2\)"):
        train_teacher(MLP(2, 2, (8,)), loader(x, y, g), 1, "group_dro", n_groups=2, progress=False)


def test_teacher_file_roundtrip_and_kind_check(tmp_path):
    torch.manual_seed(0)
    t = MLP(2, 2, (8,))
    save_teacher(t, tmp_path / "t.pt", {"arch": "mlp"})
    u = load_teacher(MLP(2, 2, (8,)), tmp_path / "t.pt")
    for pa, pb in zip(t.parameters(), u.parameters()):
        assert torch.equal(pa, pb)
    assert not u.training and not any(p.requires_grad for p in u.parameters())
    from paperworks_shared.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "s.pt", t.state_dict(), kind="early-readout-student")
    with pytest.raises(CheckpointError, match="expected 'early-readout-teacher'"):
        load_teacher(MLP(2, 2, (8,)), tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_teacher(MLP(2, 2, (16,)), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_teacher(MLP(2, 2, (8,)), tmp_path / "missing.pt")
