"""Issue 18: the batch layout is declared (batch_schema), never guessed from the tuple length.

Regression: a loader yielding (x, y, group) was read as (x, y, idx), so the group ids became dataset
indices and only 4 of 64 examples ever got a weight. Every misreading must now fail loudly.
"""

import pytest
import torch
from er_helpers import FixedHead, IdentityStudent, planted_data
from torch.utils.data import DataLoader, TensorDataset

from early_readout import EarlyReadoutDistiller, IndexedDataset, unpack_batch
from early_readout.batches import check_schema


def _distiller(n, **kw):
    head = FixedHead(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))  # predicts sign(x0)
    return EarlyReadoutDistiller(
        IdentityStudent(),
        IdentityStudent(),
        2,
        n,
        readout_layer="layer1",
        readout_head=head,
        readout_lr=0.0,
        readout_momentum=0.0,
        **kw,
    )


def _data(n=64):
    x, y, g, planted = planted_data(n, 8)
    return x, y, g, planted


def test_x_y_group_loader_is_refused_not_read_as_indices():
    x, y, g, _ = _data()
    dl = DataLoader(TensorDataset(x, y, g), batch_size=16, shuffle=True)  # (x, y, group): no index
    d = _distiller(64)
    with pytest.raises(ValueError, match=r"3 fields but batch_schema \('x', 'y', 'g', 'idx'\)"):
        d.reweigh(dl)
    with pytest.raises(ValueError, match="3 fields"):
        d.fit(dl, epochs=1, selector="last", progress=False)
    assert torch.equal(d.weights, torch.ones(64))  # nothing was weighted


def test_group_column_declared_as_index_is_caught():
    """A wrong declaration (the group column called idx) repeats values inside a batch."""
    x, y, g, _ = _data()
    dl = DataLoader(TensorDataset(x, y, g), batch_size=16, shuffle=True)
    d = _distiller(64, batch_schema=("x", "y", "idx"))
    with pytest.raises(ValueError, match="repeats values inside one batch"):
        d.reweigh(dl)


def test_swapped_index_and_group_columns_are_caught():
    x, y, g, _ = _data()
    dl = DataLoader(TensorDataset(x, y, torch.arange(64), g), batch_size=16)  # (x, y, idx, g)
    with pytest.raises(ValueError, match="repeats values"):
        _distiller(64).reweigh(dl)


def test_tiny_batches_of_distinct_groups_are_caught_by_the_full_pass_check():
    """Batches of 2 with two distinct groups pass the per-batch check; the readout pass then sees only
    the group ids as indices (2..4 of 64): it must refuse instead of weighting 4 examples."""
    x, y, _, _ = _data()
    g = torch.arange(64) % 2
    dl = DataLoader(TensorDataset(x, y, g), batch_size=2)
    d = _distiller(64, batch_schema=("x", "y", "idx"))
    with pytest.raises(ValueError, match=r"more than once|covered 2 of num_train=64"):
        d.reweigh(dl)


def test_readout_pass_over_a_subset_is_refused():
    x, y, g, _ = _data()
    dl = DataLoader(TensorDataset(x[:40], y[:40], g[:40], torch.arange(40)), batch_size=16)
    with pytest.raises(ValueError, match="covered 40 of num_train=64"):
        _distiller(64).reweigh(dl)


@pytest.mark.parametrize(
    "make",
    [
        lambda x, y, g: DataLoader(TensorDataset(x, y, g, torch.arange(64)), batch_size=16, shuffle=True),
        lambda x, y, g: DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=16, shuffle=True),
        lambda x, y, g: DataLoader(IndexedDataset(TensorDataset(x, y, g)), batch_size=16, shuffle=True),
    ],
    ids=["x,y,g,idx", "IndexedDataset(x,y)", "IndexedDataset(x,y,g)"],
)
def test_declared_layouts_weight_exactly_the_readouts_mistakes(make):
    x, y, g, planted = _data()
    d = _distiller(64)
    st = d.reweigh(make(x, y, g))
    assert torch.equal(st["wrong_idx"].sort().values, planted)
    assert torch.equal(torch.nonzero(d.weights > 1).flatten(), planted)


def test_other_schemas_and_dicts():
    x, y, g, planted = _data()
    d = _distiller(64, batch_schema=("idx", "_", "x", "y"))
    dl = DataLoader(TensorDataset(torch.arange(64), torch.zeros(64), x, y), batch_size=16, shuffle=True)
    st = d.reweigh(dl)
    assert torch.equal(st["wrong_idx"].sort().values, planted)
    b = unpack_batch({"x": x[:3], "y": y[:3], "idx": torch.tensor([4, 5, 6])})
    assert b.idx.tolist() == [4, 5, 6] and b.g is None
    with pytest.raises(ValueError, match="repeats"):
        unpack_batch({"x": x[:3], "y": y[:3], "idx": torch.tensor([1, 1, 2])})
    with pytest.raises(ValueError, match="not one integer per example"):
        unpack_batch((x[:3], y[:3], g[:3], torch.tensor([0.0, 1.0, 2.0])))


def test_schema_validation():
    assert check_schema("x, y, idx") == ("x", "y", "idx")
    with pytest.raises(ValueError, match="exactly once"):
        check_schema(("x", "y"))
    with pytest.raises(ValueError, match="unknown field"):
        check_schema(("x", "y", "index"))
    with pytest.raises(ValueError, match="exactly once"):
        EarlyReadoutDistiller(
            torch.zeros(4, 2),
            IdentityStudent(),
            2,
            4,
            readout_layer="layer1",
            batch_schema=("x", "x", "y", "idx"),
        )
