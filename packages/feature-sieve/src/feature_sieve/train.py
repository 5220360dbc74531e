"""The one trainer every method goes through: batching, evaluation, model selection, checkpoints.

Batches are a pure function of ``(seed, step)``: epoch ``e`` uses the permutation drawn from a
generator seeded with ``seed * 1_000_003 + e`` (or, with ``sample_weights``, a multinomial draw with
replacement, JTT-style up-sampling). A run resumed from a checkpoint therefore sees exactly the batches
the uninterrupted run would have seen, and two methods trained with the same seed see the same data.

Model selection (``selector``): ``"val_mean_group"`` (official SiFer: mean per-group validation accuracy,
which uses validation group labels, so group information leaks into selection; DESIGN.md pitfall 8),
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

from paperworks_shared.checkpoint import CheckpointError, save_checkpoint
from paperworks_shared.checkpoint import load_checkpoint as _load_tagged

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
            self.weights: torch.Tensor | None = w
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


class _StepBatches(torch.utils.data.Sampler):
    """The schedule's batch indices for steps ``start .. steps-1``, as a DataLoader ``batch_sampler``."""

    def __init__(self, sched: BatchSchedule, start: int, steps: int):
        self.sched, self.start, self.steps = sched, start, steps

    def __iter__(self):
        for step in range(self.start, self.steps):
            yield self.sched.indices(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class _Chunks(torch.utils.data.Sampler):
    """Consecutive index chunks ``[0, bs), [bs, 2 bs), ...`` (evaluation order)."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.bs = n, batch_size

    def __iter__(self):
        for s in range(0, self.n, self.bs):
            yield list(range(s, min(self.n, s + self.bs)))

    def __len__(self) -> int:
        return (self.n + self.bs - 1) // self.bs


def _stack_items(items) -> tuple[torch.Tensor, ...]:
    return tuple(torch.stack([torch.as_tensor(it[k]) for it in items]) for k in range(len(items[0])))


def _batches(data, batch_sampler, num_workers: int = 0):
    """Batches of ``data`` in ``batch_sampler`` order: tensors are indexed directly; any other dataset
    goes through a DataLoader (``num_workers`` processes decode in parallel; same batches either way)."""
    if _tensors(data) is not None:
        for idx in batch_sampler:
            yield _collate(data, torch.as_tensor(idx))
        return
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=[torch.as_tensor(b).tolist() for b in batch_sampler],
        num_workers=int(num_workers),
        collate_fn=_stack_items,
    )
    yield from loader


@torch.no_grad()
def predict(
    model: torch.nn.Module, data, batch_size: int = 512, device=None, num_workers: int = 0
) -> tuple[torch.Tensor, ...]:
    """(logits, y, group, index) over a dataset of ``(x, y, group, index)`` items, in eval mode."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    outs, ys, gs, ids = [], [], [], []
    try:
        for x, y, g, i in _batches(data, _Chunks(len(data), batch_size), num_workers):
            outs.append(model(x.to(device)).float().cpu())
            ys.append(y)
            gs.append(g)
            ids.append(i)
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


def group_ids(data) -> torch.Tensor:
    """The group id of every item, read from metadata when the dataset has it (never decoding images):
    a TensorDataset's third tensor, or the ``group`` column of a `datasets.Dataset` behind ``data.ds``
    (`paperworks_shared.group_data.ImageGroupDataset`); other datasets are indexed item by item."""
    t = _tensors(data)
    if t is not None:
        return t[2].long()
    ds = getattr(data, "ds", None)
    if ds is not None and "group" in getattr(ds, "column_names", ()):
        return torch.as_tensor(ds["group"], dtype=torch.long)
    return torch.as_tensor([int(data[i][2]) for i in range(len(data))], dtype=torch.long)


def group_counts(data, n_groups: int) -> torch.Tensor:
    g = group_ids(data)
    if g.numel() and (int(g.min()) < 0 or int(g.max()) >= n_groups):
        raise ValueError(
            f"group ids must be in [0, {n_groups}), got values in [{int(g.min())}, {int(g.max())}]"
        )
    return torch.bincount(g, minlength=n_groups)[:n_groups]


CHECKPOINT_KIND = "feature-sieve-fit"  # paperworks_shared.checkpoint kind of a `fit` checkpoint
MODEL_KIND = "feature-sieve-model"  # kind of a trained model file (`model.pt` from the CLI)
_CKPT_KEYS = ("method", "rng", "step", "history", "best_state")


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


def _shared_load(path: str | Path, *, kind: str, map_location="cpu") -> tuple[dict, dict]:
    """`paperworks_shared.checkpoint.load_checkpoint`, plus: any other decoding failure of a damaged file
    (e.g. ``struct.error`` from the weights-only unpickler on a few junk bytes, which the shared loader
    lets through) also becomes a `CheckpointError` naming the path, never a traceback."""
    try:
        return _load_tagged(path, kind=kind, map_location=map_location)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 -- a user file that cannot be decoded is the user's problem
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (corrupt or truncated): {_first_line(e)}"
        ) from None


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A `fit` checkpoint (`paperworks_shared.checkpoint` format, kind ``feature-sieve-fit``), loaded with
    ``weights_only=True``; a missing, corrupt, foreign or other-kind file raises `CheckpointError`."""
    state, _ = _shared_load(path, kind=CHECKPOINT_KIND, map_location=map_location)
    missing = [k for k in _CKPT_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: feature-sieve checkpoint lacks {missing}; delete it or train without resuming"
        )
    return state


def load_checkpoint_meta(path: str | Path) -> dict:
    """The ``meta`` of a `fit` checkpoint (after the same checks as `load_checkpoint`)."""
    _, meta = _shared_load(path, kind=CHECKPOINT_KIND)
    return meta


def save_model(path: str | Path, model: torch.nn.Module, meta: dict | None = None) -> Path:
    """The trained model's state dict as a ``feature-sieve-model`` checkpoint (atomic, weights_only-safe)."""
    return save_checkpoint(path, model.state_dict(), kind=MODEL_KIND, meta=meta)


def load_model_state(path: str | Path, map_location="cpu") -> dict:
    """The state dict saved by `save_model`; `CheckpointError` naming the path for anything else."""
    state, _ = _shared_load(path, kind=MODEL_KIND, map_location=map_location)
    return state


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
    num_workers: int = 0,
    checkpoint_meta: dict | None = None,
) -> History:
    """Train ``method`` for ``steps`` steps; see the module docstring.

    ``callbacks`` are called as ``cb(method, step, log)`` after every step. With ``checkpoint_dir``,
    ``checkpoint.pt`` is written every ``checkpoint_every`` steps (default: at every evaluation and at
    the end) and, with ``resume``, an existing one is loaded and training continues after its step.
    ``checkpoint_meta`` is stored with it (the CLI stores the run's configuration and refuses to resume
    a checkpoint written under another one). ``device`` moves the method there (default: where its
    parameters are); ``num_workers`` DataLoader processes load non-tensor datasets.
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
            save_checkpoint(
                ckpt_path,
                {
                    "method": method.checkpoint(),
                    "rng": torch.get_rng_state(),
                    "step": step,
                    "history": _plain(dataclasses.asdict(hist)),
                    "best_state": best_state,
                },
                kind=CHECKPOINT_KIND,
                meta={
                    "method": getattr(method, "name", type(method).__name__),
                    "steps": int(steps),
                    **(checkpoint_meta or {}),
                },
            )

    method.train()
    bar = tqdm(
        range(start, steps), desc=f"{getattr(method, 'name', 'train')}", disable=not progress, leave=False
    )
    batches = _batches(train, _StepBatches(sched, start, steps), num_workers)
    for step, batch in zip(bar, batches):
        x, y, g, i = (t.to(device) for t in batch)
        log = method.training_step(x, y, step, group=g, index=i)
        log["step"] = step
        if log_every and step % log_every == 0:
            hist.logs.append(log)
        for cb in callbacks:
            cb(method, step, log)
        last = step == steps - 1
        if val is not None and (step % eval_every == 0 or last):
            ev = evaluate(method.model, val, n_groups, train_counts, num_workers=num_workers)
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
