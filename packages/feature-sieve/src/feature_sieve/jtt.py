"""JTT (Just Train Twice; Liu et al. 2021): the no-group-label baseline, through the same trainer.

Stage 1 trains ERM for ``identify_steps`` and collects the training examples it gets wrong (the error
set). Stage 2 trains a fresh copy of the *same initial* model with ERM while up-sampling the error set
``upweight`` times (sampling with replacement, weights 1 or ``upweight``). No group labels are used.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .methods import ERM
from .train import History, fit, predict


def error_set(model: nn.Module, train) -> torch.Tensor:
    """Indices (positions in ``train``) the model misclassifies."""
    logits, y, _, _ = predict(model, train)
    return torch.nonzero(logits.argmax(1) != y).flatten()


def run_jtt(
    model: nn.Module,
    num_classes: int,
    train,
    steps: int,
    identify_steps: int,
    upweight: float = 20.0,
    erm_kwargs: dict | None = None,
    make_method: Callable[[nn.Module], ERM] | None = None,
    **fit_kwargs,
) -> tuple[ERM, History, torch.Tensor]:
    """JTT; returns (the stage-2 method, its history, the error-set indices). ``model`` is the initial model."""
    if upweight < 1:
        raise ValueError(f"upweight must be >= 1, got {upweight}")
    if not 0 < identify_steps:
        raise ValueError(f"identify_steps must be > 0, got {identify_steps}")
    make = make_method or (lambda m: ERM(m, num_classes, **(erm_kwargs or {})))
    init = copy.deepcopy(model.state_dict())
    stage1 = make(model)
    fit_kwargs1 = {k: v for k, v in fit_kwargs.items() if k not in ("val", "checkpoint_dir", "selector")}
    fit(stage1, train, identify_steps, selector="last", **fit_kwargs1)
    errors = error_set(stage1.model, train)
    weights = torch.ones(len(train), dtype=torch.float64)
    weights[errors] = float(upweight)
    model2 = copy.deepcopy(model)
    model2.load_state_dict(init)
    stage2 = make(model2)
    stage2.name = "jtt"
    hist = fit(stage2, train, steps, sample_weights=weights, **fit_kwargs)
    return stage2, hist, errors
