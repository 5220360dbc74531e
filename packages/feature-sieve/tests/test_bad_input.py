"""Deliverable 7: clear errors for bad layer names, a sieve layer with nothing after it, bad labels, no groups."""

import pytest
import torch

from feature_sieve import ERM, AuxHead, FeatureSieve, GroupDRO, SmallCNN, fit
from feature_sieve.data import make_spurious_digits, to_torch


def test_unknown_layer_lists_available_names():
    with pytest.raises(KeyError, match=r"'layer9' does not exist.*conv1.*conv2.*fc"):
        FeatureSieve(SmallCNN(1, 2, 4), "layer9", 2, (1, 8, 8))


def test_sieve_layer_with_nothing_trainable_after_it():
    with pytest.raises(ValueError, match="nothing trainable remains after sieve layer 'fc'"):
        FeatureSieve(SmallCNN(1, 2, 4), "fc", 2, (1, 8, 8), aux_head="linear")


def test_sieve_layer_without_parameters_below():
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with pytest.raises(ValueError, match="no trainable parameters at or below sieve layer '0'"):
        FeatureSieve(m, "0", 2, (1, 8, 8), aux_head="linear")


def test_labels_outside_class_range():
    s = FeatureSieve(SmallCNN(1, 2, 4), "conv1", 2, (1, 8, 8), aux_head="linear")
    with pytest.raises(ValueError, match=r"labels outside the class range.*\[0, 2\].*num_classes=2"):
        s.training_step(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), 0)
    with pytest.raises(ValueError, match="outside the class range"):
        ERM(SmallCNN(1, 2, 4), 2).training_step(torch.zeros(2, 1, 8, 8), torch.tensor([-1, 0]), 0)
    with pytest.raises(TypeError, match="integer class ids"):
        s.training_step(torch.zeros(2, 1, 8, 8), torch.tensor([0.0, 1.0]), 0)


def test_model_output_must_match_num_classes():
    s = FeatureSieve(SmallCNN(1, 3, 4), "conv1", 2, (1, 8, 8), aux_head="linear")
    with pytest.raises(ValueError, match=r"expected \(batch, num_classes=2\)"):
        s.training_step(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), 0)


def test_dataset_without_group_column_where_one_is_needed():
    ds = make_spurious_digits(seed=0)["validation"].remove_columns(["group"])
    with pytest.raises(KeyError, match="no 'group' column"):
        to_torch(ds)
    dro = GroupDRO(SmallCNN(1, 2, 4), 2, n_groups=4)
    with pytest.raises(ValueError, match="Group DRO needs group labels"):
        dro.training_step(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]), 0, group=None)


def test_other_bad_options():
    with pytest.raises(ValueError, match="conv aux head needs"):
        AuxHead((16,), 2, kind="conv")
    with pytest.raises(ValueError, match="aux head kind"):
        AuxHead((4, 8, 8), 2, kind="transformer")
    with pytest.raises(ValueError, match="forget_every"):
        FeatureSieve(SmallCNN(1, 2, 4), "conv1", 2, (1, 8, 8), forget_every=-1)
    with pytest.raises(TypeError, match="example_input"):
        FeatureSieve(SmallCNN(1, 2, 4), "conv1", 2, "1x8x8")
    train = torch.utils.data.TensorDataset(
        torch.zeros(4, 1, 8, 8),
        torch.zeros(4, dtype=torch.long),
        torch.zeros(4, dtype=torch.long),
        torch.arange(4),
    )
    with pytest.raises(ValueError, match="needs validation data"):
        fit(ERM(SmallCNN(1, 2, 4), 2), train, 2, progress=False)
