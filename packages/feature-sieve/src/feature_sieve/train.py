"""The one trainer every method goes through: batching, evaluation, model selection, checkpoints.

Batches are a pure function of ``(seed, step)``: epoch ``e`` uses the permutation drawn from a
generator seeded with ``seed * 1_000_003 + e`` (or, with ``sample_weights``, a multinomial draw with
replacement, JTT-style up-sampling). A run resumed from a checkpoint therefore sees exactly the batches
the uninterrupted run would have seen, and two methods trained with the same seed see the same data.

Model selection (``selector``): ``"val_mean_group"`` (official SiFer: mean per-group validation accuracy,
which uses validation group labels, so group information leaks into selection; notes pitfall 8),
``"val_wga"``, ``"val_avg"`` (label-only, the realistic choice) or ``"last"``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from paperworks_shared.files import atomic_torch_save

from .metrics import GroupMetrics

SELECTORS = {
    "val_mean_group": "mean_group_acc",
    "val_wga": "worst_group_acc",
    "val_avg": "avg_acc",
    "last": None,
}


@dataclass
class History:
    """Per-step training logs, evaluation records, and the selected step."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    best_step: int = -1
    best_score: float = float("-inf")
    resumed_from: int | None = None


def _tensors(data) -> tuple[torch.Tensor, ...] | None:
    return data.tensors if isinstance(data, torch.utils.data.TensorDataset) else None


def _collate(data, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    t = _tensors(data)
    if t is not None:
        return tuple(x[idx] for x in t)
    items = [data[int(i)] for i in idx]
    return tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(len(items[0])))


class BatchSchedule:
    """Deterministic batch indices for step ``s`` (see the module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int, sample_weights: torch.Tensor | None = None):
        if n < 1:
            raise ValueError("the training set is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.bs, self.seed = n, min(batch_size, n), seed
        self.per_epoch = max(1, n // self.bs)  # drop_last
        if sample_weights is not None:
            w = torch.as_tensor(sample_weights, dtype=torch.float64)
            if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"sample_weights must be {n} non-negative numbers with a positive sum")
            self.weights = w
        else:
            self.weights = None
        self._cache: tuple[int, torch.Tensor] | None = None

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_epoch)
        if self._cache is None or self._cache[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            if self.weights is None:
                order = torch.randperm(self.n, generator=g)
            else:
                order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
            self._cache = (epoch, order)
        return self._cache[1][k * self.bs : (k + 1) * self.bs]


@torch.no_grad()
def predict(model: torch.nn.Module, data, batch_size: int = 512, device=None) -> tuple[torch.Tensor, ...]:
    """(logits, y, group, index) over a dataset of ``(x, y, group, index)`` items, in eval mode."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    outs, ys, gs, ids = [], [], [], []
    try:
        n = len(data)
        for s in range(0, n, batch_size):
            x, y, g, i = _collate(data, torch.arange(s, min(n, s + batch_size)))
            outs.append(model(x.to(device)).float().cpu())
            ys.append(y), gs.append(g), ids.append(i)
    finally:
        model.train(was)
    return torch.cat(outs), torch.cat(ys), torch.cat(gs), torch.cat(ids)


def evaluate(model, data, n_groups: int = 4, train_group_counts: Sequence[float] | None = None, **kw) -> dict:
    """`GroupMetrics` of ``model`` on ``data``: avg (plain and train-weighted), mean-group, worst-group."""
    logits, y, g, _ = predict(model, data, **kw)
    gm = GroupMetrics(n_groups, train_group_counts)
    gm.update(logits, y, g)
    out = gm.compute()
    out["per_group"] = gm.table()
    return out


def group_counts(data, n_groups: int) -> torch.Tensor:
    t = _tensors(data)
    g = t[2] if t is not None else torch.as_tensor([int(data[i][2]) for i in range(len(data))])
    return torch.bincount(g, minlength=n_groups)[:n_groups]


CHECKPOINT_FORMAT = "feature-sieve-ckpt-v2"
_CKPT_KEYS = ("method", "rng", "step", "history", "best_state")


class CheckpointError(ValueError):
    """A checkpoint or model file that is missing, unreadable, unsafe to unpickle or from another run."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def _plain(obj):
    """numpy scalars -> Python numbers, recursively (so the checkpoint loads with weights_only=True)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if hasattr(obj, "item") and not isinstance(obj, torch.Tensor) and getattr(obj, "shape", None) == ():
        return obj.item()
    return obj


def safe_load(path: str | Path, what: str = "checkpoint", map_location="cpu"):
    """`torch.load(path, weights_only=True)`: no arbitrary unpickling of a user file. A missing,
    truncated, foreign or pickled-object file raises `CheckpointError` naming the path."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{what} {str(path)!r} cannot be read safely (corrupt, truncated, or not a feature-sieve file): "
            f"{_first_line(e)}"
        ) from e


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A `fit` checkpoint, loaded with ``weights_only=True`` and checked for the expected format."""
    ck = safe_load(path, "checkpoint", map_location)
    if (
        not isinstance(ck, dict)
        or ck.get("format") != CHECKPOINT_FORMAT
        or any(k not in ck for k in _CKPT_KEYS)
    ):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a feature-sieve {CHECKPOINT_FORMAT} checkpoint; delete it or "
            "train without resuming"
        )
    return ck


def fit(
    method,
    train,
    steps: int,
    batch_size: int = 64,
    val=None,
    eval_every: int | None = None,
    selector: str = "val_mean_group",
    n_groups: int = 4,
    seed: int = 0,
    sample_weights: torch.Tensor | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    restore_best: bool = True,
    log_every: int = 1,
    progress: bool = True,
    callbacks: Sequence[Callable[[Any, int, dict], None]] = (),
    device=None,
) -> History:
    """Train ``method`` for ``steps`` steps; see the module docstring.

    ``callbacks`` are called as ``cb(method, step, log)`` after every step. With ``checkpoint_dir``,
    ``checkpoint.pt`` is written every ``checkpoint_every`` steps (default: at every evaluation and at
    the end) and, with ``resume``, an existing one is loaded and training continues after its step.
    """
    if selector not in SELECTORS:
        raise ValueError(f"selector must be one of {list(SELECTORS)}, got {selector!r}")
    if SELECTORS[selector] and val is None:
        raise ValueError(
            f"selector {selector!r} needs validation data (val=...); use selector='last' without it"
        )
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    device = torch.device(device) if device else next(method.parameters()).device
    method.to(device)
    sched = BatchSchedule(len(train), batch_size, seed, sample_weights)
    eval_every = eval_every or max(1, steps // 10)
    train_counts = group_counts(train, n_groups).tolist()
    hist = History()
    best_state = None
    start = 0
    ckpt_path = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    if ckpt_path is not None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if resume and ckpt_path.exists():
            ck = load_checkpoint(ckpt_path, device)
            try:
                method.restore(ck["method"])
            except (KeyError, RuntimeError, ValueError) as e:
                raise CheckpointError(
                    f"checkpoint {str(ckpt_path)!r} does not fit this method/model ({_first_line(e)}); "
                    "delete it or train without resuming"
                ) from e
            torch.set_rng_state(ck["rng"])
            start, hist, best_state = ck["step"] + 1, History(**ck["history"]), ck["best_state"]
            hist.resumed_from = ck["step"]
    checkpoint_every = checkpoint_every or eval_every

    def save(step):
        if ckpt_path is not None:
            # tensors, numbers, strings and containers only: loadable with weights_only=True; atomic
            atomic_torch_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "method": method.checkpoint(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                    "history": _plain(dataclasses.asdict(hist)),
                    "best_state": best_state,
                },
                ckpt_path,
            )

    method.train()
    bar = tqdm(
        range(start, steps), desc=f"{getattr(method, 'name', 'train')}", disable=not progress, leave=False
    )
    for step in bar:
        x, y, g, i = (t.to(device) for t in _collate(train, sched.indices(step)))
        log = method.training_step(x, y, step, group=g, index=i)
        log["step"] = step
        if log_every and step % log_every == 0:
            hist.logs.append(log)
        for cb in callbacks:
            cb(method, step, log)
        last = step == steps - 1
        if val is not None and (step % eval_every == 0 or last):
            ev = evaluate(method.model, val, n_groups, train_counts)
            ev["step"] = step
            hist.evals.append(ev)
            key = SELECTORS[selector]
            score = ev[key] if key else step
            if score >= hist.best_score:
                hist.best_score, hist.best_step = score, step
                best_state = copy.deepcopy(method.model.state_dict())
            bar.set_postfix(val_wga=f"{ev['worst_group_acc']:.3f}", val_avg=f"{ev['avg_acc']:.3f}")
        if (step + 1) % checkpoint_every == 0 or last:
            save(step)
    if selector == "last" or best_state is None:
        hist.best_step = steps - 1
    elif restore_best:
        method.model.load_state_dict(best_state)
    method.eval()
    return hist
