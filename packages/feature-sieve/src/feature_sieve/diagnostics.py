"""Mechanism diagnostics (notes §5.2, E2/E3): aux-head entropy over training, and a linear shortcut probe.

* `AuxEntropyTracker`: a `fit` callback recording the aux head's prediction entropy (and its accuracy on
  the label) on a fixed probe batch every ``every`` steps. Forgetting pushes the entropy toward log K.
* `shortcut_probe`: how linearly decodable an attribute (e.g. the spurious one) is from a layer's
  features: logistic regression fitted on one half of the examples, accuracy on the other half
  (raw pooled features and a bounded-norm probe by default; see its docstring).
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
    try:
        feats = [
            pooler(forward_to(model, layer, x[s : s + batch_size])).flatten(1).float().cpu()
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
    C: float = 0.01,
    pool: str = "avg",
    standardize: bool = False,
) -> float:
    """Held-out accuracy of a logistic-regression probe for ``attribute`` on ``layer``'s features.

    By default the probe reads the *raw* pooled features (what the aux head and the next layer see)
    with a bounded-norm (L2, ``C=0.01``) logistic regression: it measures whether the shortcut is
    readable at the features' own scale. The sieve mostly *shrinks* the shortcut's direction rather
    than deleting it: with ``standardize=True`` (every feature rescaled to unit variance) the toy
    benchmark's shortcut stays perfectly decodable after sieving too; both are reported there.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    a = np.asarray(torch.as_tensor(attribute).cpu())
    if len(np.unique(a)) < 2:
        raise ValueError("the probe needs at least two attribute values in the data")
    f = layer_features(model, layer, x, pool=pool)
    perm = np.random.default_rng(seed).permutation(len(a))
    tr, te = perm[: len(a) // 2], perm[len(a) // 2 :]
    if standardize:
        sc = StandardScaler().fit(f[tr])
        f = sc.transform(f)
    clf = LogisticRegression(C=C, max_iter=3000).fit(f[tr], a[tr])
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
