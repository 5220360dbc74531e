"""Mechanism diagnostics (DESIGN.md §5.2, E2/E3): aux-head entropy over training, and a linear shortcut probe.

* `AuxEntropyTracker`: a `fit` callback recording the aux head's prediction entropy (and its accuracy on
  the label) on a fixed probe batch every ``every`` steps. Forgetting pushes the entropy toward log K.
* `shortcut_probe`: how linearly decodable an attribute (e.g. the spurious one) is from a layer's
  features: logistic regression fitted on one half of the examples, accuracy on the other half, on
  standardised pooled features by default, so it is invariant to rescaling the layer (see its docstring).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .hooks import forward_to
from .losses import prediction_entropy


@torch.no_grad()
def layer_features(
    model: nn.Module, layer: str, x: torch.Tensor, batch_size: int = 512, pool: str = "flatten"
) -> np.ndarray:
    """Outputs of ``layer`` for ``x`` (eval mode), flattened or pooled (`feature_sieve.heads.Pool` modes)."""
    from .heads import Pool

    pooler = Pool(pool)
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    try:
        feats = [
            pooler(forward_to(model, layer, x[s : s + batch_size].to(dev))).flatten(1).float().cpu()
            for s in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was)
    return torch.cat(feats).numpy()


def shortcut_probe(
    model: nn.Module,
    layer: str,
    x: torch.Tensor,
    attribute: torch.Tensor,
    seed: int = 0,
    C: float = 1.0,
    pool: str = "avg",
    standardize: bool = True,
) -> float:
    """Held-out accuracy of a logistic-regression probe for ``attribute`` on ``layer``'s features.

    Fitted on one half of the examples (``seed`` picks the halves), scored on the other half.

    By default every pooled feature is standardised (z-scored with the fit half's mean and std) before
    the probe, so the probe is **scale-invariant**: rescaling a layer's output channels by any positive
    factors (e.g. ``conv1`` by 0.3 and ``conv2`` by 1/0.3 through a ReLU, which leaves the network's
    function unchanged) leaves the result unchanged (tested). It measures whether the attribute is
    linearly decodable, not how large the weights are. ``standardize=False`` probes the raw features
    with the same ``C``: that number depends on the features' scale (a small ``C`` on small features
    returns the majority-class rate whatever the features hold) and is reported only as a diagnostic.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if not C > 0:
        raise ValueError(f"C must be > 0, got {C!r}")
    a = np.asarray(torch.as_tensor(attribute).cpu())
    if len(a) != len(x):
        raise ValueError(f"{len(a)} attribute values for {len(x)} examples")
    if len(np.unique(a)) < 2:
        raise ValueError("the probe needs at least two attribute values in the data")
    f = layer_features(model, layer, x, pool=pool).astype(np.float64)
    perm = np.random.default_rng(seed).permutation(len(a))
    tr, te = perm[: len(a) // 2], perm[len(a) // 2 :]
    if len(np.unique(a[tr])) < 2:
        raise ValueError("the probe's fit half holds a single attribute value: use more examples")
    if standardize:
        f = StandardScaler().fit(f[tr]).transform(f)
    clf = LogisticRegression(C=C, max_iter=5000).fit(f[tr], a[tr])
    return float(clf.score(f[te], a[te]))


class AuxEntropyTracker:
    """`fit` callback: aux-head entropy / label accuracy on a fixed batch every ``every`` steps."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, every: int = 10):
        self.x, self.y, self.every = x, y, int(every)
        self.steps: list[int] = []
        self.entropy: list[float] = []
        self.acc: list[float] = []

    def __call__(self, method, step: int, log: dict) -> None:
        if step % self.every:
            return
        was = method.training
        method.eval()
        with torch.no_grad():
            logits = method.aux_logits(self.x.to(next(method.parameters()).device))
        method.train(was)
        self.steps.append(step)
        self.entropy.append(float(prediction_entropy(logits)))
        self.acc.append(float((logits.argmax(1).cpu() == self.y).float().mean()))
