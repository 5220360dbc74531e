"""Training a CBM the three ways of Koh et al. 2020 [DESIGN.md §1.1].

- independent: encoder g with BCE on true concepts; head f on the *true* concepts (0/1).
- sequential: g first; then f on g's *predicted* bottleneck phi(g(x)) (detached).
- joint: L = CE(f(phi(g(x))), y) + concept_weight * BCE(g(x), c), end to end.

Afterwards the per-concept train-split percentiles used by the ``percentile`` intervention format
are stored in the model (`ConceptBottleneckModel.calibrate_percentiles`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .data.dataset import ConceptDataset
from .model import ConceptBottleneckModel


@dataclass
class FitHistory:
    concept_loss: list[float] = field(default_factory=list)
    label_loss: list[float] = field(default_factory=list)


def _as_dataset(data) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and all(torch.is_tensor(t) for t in data):
        return ConceptDataset(*data)
    raise TypeError(f"expected a Dataset or (x, c, y[, visible]) tensors, got {type(data).__name__}")


def check_training_batch(
    x: torch.Tensor, c: torch.Tensor, y: torch.Tensor, n_classes: int, where: str = ""
) -> None:
    """Refuse data that would train silently into a wrong model [issue 18]: non-finite features,
    concept labels outside {0, 1}, class labels outside [0, n_classes). Raises ValueError naming the
    first offending row and column."""
    at = f" ({where})" if where else ""
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x.reshape(len(x), -1))
        if bad.any():
            i, j = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"features hold {int(bad.sum())} NaN/inf value(s){at}, first at row {i}, feature {j} "
                f"({float(x.reshape(len(x), -1)[i, j])}): impute or drop them before training"
            )
    cf = c.float() if not c.is_floating_point() else c
    bad = ~((cf == 0) | (cf == 1))
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"concept labels must be 0 or 1{at}: {int(bad.sum())} value(s) are not, first at row {i}, "
            f"concept {j} (value {float(cf[i, j])}); binarise soft or uncertain labels first (mark "
            "unknown ones with `visible=False`)"
        )
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError(f"class labels must be integers{at}, got e.g. {float(y[y != y.round()][0])}")
    hi = max(n_classes, 2)
    bad = (y < 0) | (y >= hi)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"class labels must be in [0, {hi}){at} for a head with {n_classes} output(s): row {i} has {int(y[i])}"
        )


def label_loss(label_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or BCE for a binary task with a single logit."""
    if label_logits.shape[-1] == 1:
        return nn.functional.binary_cross_entropy_with_logits(label_logits[:, 0], y.float())
    return nn.functional.cross_entropy(label_logits, y.long())


@torch.no_grad()
def predict_concept_logits(model: ConceptBottleneckModel, data, batch_size: int = 512) -> torch.Tensor:
    """Concept logits for a whole dataset, in order (the encoder runs once per instance)."""
    was = model.training
    model.eval()
    out = []
    dev = next(model.parameters()).device
    ds = _as_dataset(data)
    if isinstance(ds, ConceptDataset):
        for s in range(0, len(ds), batch_size):
            out.append(model.encode(ds.x[s : s + batch_size].to(dev)).float().cpu())
        model.train(was)
        return torch.cat(out)
    for batch in DataLoader(_as_dataset(data), batch_size=batch_size, shuffle=False):
        out.append(model.encode(batch[0].to(dev)).float().cpu())
    model.train(was)
    return torch.cat(out)


def _loop(params, batches_fn, loss_fn, epochs, lr, weight_decay, desc, progress, log):
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        total, n = 0.0, 0
        for batch in batches_fn():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            opt.step()
            total += loss.item() * len(batch[0])
            n += len(batch[0])
        log.append(total / max(n, 1))


def _head_outputs(model: ConceptBottleneckModel) -> int:
    """Number of label logits of the head (probed with one all-zero bottleneck)."""
    p = next(model.parameters())
    with torch.no_grad():
        was = model.label_predictor.training
        model.label_predictor.eval()
        z = torch.zeros(1, model.groups.n_concepts, device=p.device, dtype=p.dtype)
        out = model.head(z).shape[-1]
        model.label_predictor.train(was)
    return int(out)


def fit(
    model: ConceptBottleneckModel,
    train_data,
    *,
    epochs: int = 30,
    head_epochs: int | None = None,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    concept_weight: float = 1.0,
    seed: int = 0,
    progress: bool = False,
    calibrate: bool = True,
) -> FitHistory:
    """Train `model` according to `model.mode`; returns per-epoch losses.

    `concept_weight` is lambda of the joint loss (Koh: 0.001 ... 1). `head_epochs` defaults to `epochs`.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    ds = _as_dataset(train_data)
    head_epochs = epochs if head_epochs is None else head_epochs
    dev = next(model.parameters()).device
    n_out = _head_outputs(model)
    if isinstance(ds, ConceptDataset):  # validate once, up front, before any training
        check_training_batch(ds.x, ds.c, ds.y, n_out, "training data")
    gen = torch.Generator().manual_seed(seed)
    hist = FitHistory()
    model.train()

    def batches():
        if isinstance(ds, ConceptDataset):  # in-memory: slice tensors (a per-item DataLoader is ~50x slower)
            perm = torch.randperm(len(ds), generator=gen)
            for s in range(0, len(ds), batch_size):
                i = perm[s : s + batch_size]
                yield [ds.x[i].to(dev), ds.c[i].to(dev), ds.y[i].to(dev)]
        else:
            for b in DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen):
                check_training_batch(b[0], b[1], b[2], n_out, "a training batch")
                yield [t.to(dev) for t in b]

    def concept_loss(b):
        return nn.functional.binary_cross_entropy_with_logits(model.encode(b[0]), b[1].float())

    if model.mode in ("independent", "sequential"):
        _loop(
            model.concept_encoder.parameters(),
            batches,
            concept_loss,
            epochs,
            lr,
            weight_decay,
            "icbm: concept encoder",
            progress,
            hist.concept_loss,
        )
        if model.mode == "independent":

            def head_loss(b):  # trained on the true concepts (0/1)
                return label_loss(model.head(b[1].float()), b[2])
        else:

            def head_loss(b):  # trained on the predicted bottleneck
                with torch.no_grad():
                    z = model.phi(model.encode(b[0]))
                return label_loss(model.head(z), b[2])

        _loop(
            model.label_predictor.parameters(),
            batches,
            head_loss,
            head_epochs,
            lr,
            weight_decay,
            "icbm: label head",
            progress,
            hist.label_loss,
        )
    else:

        def joint_loss(b):
            logits = model.encode(b[0])
            ly = label_loss(model.head(model.phi(logits)), b[2])
            lc = nn.functional.binary_cross_entropy_with_logits(logits, b[1].float())
            hist_step.append((ly.item(), lc.item()))
            return ly + concept_weight * lc

        hist_step: list[tuple[float, float]] = []
        _loop(model.parameters(), batches, joint_loss, epochs, lr, weight_decay, "icbm: joint", progress, [])
        hist.label_loss = [s[0] for s in hist_step]
        hist.concept_loss = [s[1] for s in hist_step]
    model.eval()
    if calibrate:
        model.calibrate_percentiles(predict_concept_logits(model, ds))
    return hist
