"""Trainer: deterministic batches, resumption, model selection; Group DRO and JTT baselines."""

import torch

from feature_sieve import ERM, FeatureSieve, GroupDRO, SmallCNN, evaluate, fit, run_jtt
from feature_sieve.train import BatchSchedule


def _small(color_digits, n=192):
    return torch.utils.data.TensorDataset(*(t[:n] for t in color_digits["train"].tensors))


def _sieve(seed=0):
    torch.manual_seed(seed)
    return FeatureSieve(SmallCNN(2, 2, 4), "conv1", 2, (2, 8, 8), aux_head="linear", forget_every=2, lr=0.05)


def test_resume_from_checkpoint_equals_uninterrupted_run(color_digits, tmp_path):
    train = _small(color_digits)
    a = _sieve()
    fit(a, train, 10, batch_size=32, selector="last", seed=1, progress=False)
    b = _sieve()
    fit(
        b,
        train,
        6,
        batch_size=32,
        selector="last",
        seed=1,
        progress=False,
        checkpoint_dir=tmp_path,
        checkpoint_every=3,
    )
    c = _sieve(seed=99)  # different init: everything must come from the checkpoint
    hist = fit(c, train, 10, batch_size=32, selector="last", seed=1, progress=False, checkpoint_dir=tmp_path)
    assert hist.resumed_from == 5
    for (n, p), (_, q) in zip(a.state_dict().items(), c.state_dict().items()):
        assert torch.equal(p, q), n


def test_batch_schedule_is_a_function_of_seed_and_step():
    s1, s2 = BatchSchedule(100, 32, 3), BatchSchedule(100, 32, 3)
    assert torch.equal(s1.indices(7), s2.indices(7))
    epoch0 = torch.cat([s1.indices(k) for k in range(3)])
    assert len(set(epoch0.tolist())) == 96  # without replacement inside an epoch
    w = torch.zeros(100, dtype=torch.float64)
    w[:5] = 1
    assert set(BatchSchedule(100, 32, 0, w).indices(0).tolist()) <= set(range(5))


def test_model_selection_restores_best_validation_state(color_digits):
    train, val = _small(color_digits), color_digits["validation"]
    m = ERM(SmallCNN(2, 2, 4), 2, lr=0.05)
    hist = fit(m, train, 12, batch_size=32, val=val, eval_every=4, selector="val_wga", progress=False)
    assert [e["step"] for e in hist.evals] == [0, 4, 8, 11]
    best = max(hist.evals, key=lambda e: (e["worst_group_acc"], e["step"]))
    assert hist.best_step == best["step"]
    assert evaluate(m.model, val)["worst_group_acc"] == best["worst_group_acc"]


def test_group_dro_weights_follow_exponentiated_group_losses():
    torch.manual_seed(0)
    dro = GroupDRO(SmallCNN(1, 2, 4), 2, n_groups=3, eta=0.5, lr=0.0)
    x = torch.randn(6, 1, 8, 8)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    g = torch.tensor([0, 0, 1, 1, 1, 1])  # group 2 absent
    with torch.no_grad():
        per = torch.nn.functional.cross_entropy(dro.model(x), y, reduction="none")
    l0, l1 = per[:2].mean(), per[2:].mean()
    dro.training_step(x, y, 0, group=g)
    q = torch.tensor([torch.exp(0.5 * l0), torch.exp(0.5 * l1), 1.0]) / 3
    assert torch.allclose(dro.q, q / q.sum(), atol=1e-6)


def test_jtt_upsamples_the_error_set(color_digits):
    train = _small(color_digits)
    torch.manual_seed(0)
    method, hist, errors = run_jtt(
        SmallCNN(2, 2, 4),
        2,
        train,
        steps=6,
        identify_steps=6,
        upweight=10,
        erm_kwargs={"lr": 0.05},
        batch_size=32,
        selector="last",
        progress=False,
    )
    assert method.name == "jtt" and 0 < len(errors) < len(train)
    assert len(hist.logs) == 6
