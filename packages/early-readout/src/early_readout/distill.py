"""`EarlyReadoutDistiller`: knowledge distillation with per-example weights from an early readout.

Algorithm (DESIGN.md §1.4, official ``train.py::train / train_aux / reweigh_aux``)::

    w = 1 (one weight per *dataset index*)
    for epoch e:
        train the student one epoch on mean_i w_i * l_KD(i)            (losses.py)
        if reweigh_every and (e + 1 - reweigh_start) % reweigh_every == 0:
            re-initialise the readout head; train it on detached student features at `readout_layer`
            run it over the training set; for every example it gets wrong: w_i <- f(margin_i)
            (correctly read-out examples keep their previous weight unless persist_weights=False)

Deliberate differences from the released code (DESIGN.md §2.3): features reach the readout through a
forward hook under ``torch.no_grad()`` with the student in eval mode, so training the readout changes
no student parameter or BN buffer (the official code flips ``requires_grad`` on the shared stem and
thereby freezes it for the rest of training; reproducible with ``faithful_freeze_bug=True``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from paperworks_shared.checkpoint import save_checkpoint

from .analysis import minority_groups, readout_analysis
from .batches import DEFAULT_SCHEMA, check_schema, unpack_batch
from .errors import CheckpointError, first_line, read_checkpoint
from .losses import NORMALIZE, distill_loss_per_example, normalize_weights
from .readout import ReadoutHead
from .taps import FeatureTap, find_module, modules_run_before
from .weighting import MARGINS, get_weight_fn, margin

CONTROLS = (None, "random")
#: `paperworks_shared.checkpoint` kinds of the files this module writes
FIT_KIND = "early-readout-fit"
WEIGHTS_KIND = "early-readout-weights"
_CKPT_KEYS = ("distiller", "optimizer", "torch_rng", "history", "best_state", "epoch")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a `fit` checkpoint (``paperworks_shared.checkpoint`` format, kind ``early-readout-fit``, read
    with ``weights_only=True``); a missing, truncated, foreign or wrong-kind file raises `CheckpointError`
    naming the path."""
    state, _ = read_checkpoint(path, kind=FIT_KIND, map_location=map_location)
    missing = [k for k in _CKPT_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: early-readout checkpoint lacks {missing}; delete it or train without resuming"
        )
    return state


SELECTORS = ("val_wga", "val_avg", "val_mean_group", "last")
_SELECTOR_KEYS = {"val_wga": "val_worst_group_acc", "val_avg": "val_avg", "val_mean_group": "val_mean_group"}


def infer_num_classes(model: nn.Module) -> int | None:
    """Output size of a classifier when it can be read off the module (timm / torchvision / ours)."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    for attr in ("fc", "head", "classifier"):
        m = getattr(model, attr, None)
        if isinstance(m, nn.Linear):
            return m.out_features
        if isinstance(m, nn.Sequential) and len(m) and isinstance(m[-1], nn.Linear):
            return m[-1].out_features
    return None


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode and restore each one's own flag afterwards (DESIGN.md §6.6)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, f in flags:
            m.training = f


@dataclass
class History:
    """Per-epoch records of `fit` plus the selected epoch."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    reweighs: list[dict] = field(default_factory=list)


class EarlyReadoutDistiller:
    """Distil ``teacher`` into ``student`` with early-readout example weights (DeDiER, arXiv 2310.18590).

    Args:
        teacher: a frozen classifier (put in eval mode, grads off) or a tensor of precomputed teacher
            logits of shape (num_train, num_classes), indexed by dataset index.
        student: the model being trained; ``readout_layer`` names one of its submodules.
        num_classes: class count of teacher, student and readout.
        num_train: training-set size; the weight vector has one entry per dataset index.
        readout_layer: dotted module name in the student whose output feeds the readout (official:
            the ResNet ``layer1``).
        readout_head: ``"auto" | "basicblock" | "linear" | "mlp"`` or an ``nn.Module`` (features -> logits).
        temperature, kd_alpha: KD temperature (official 3) and KD share (1 = pure KD, official default).
        weight_fn, alpha, beta: ``"exp_pow"`` (final code, alpha=0.05, beta=4) or ``"affine_exp"``
            (Aug-2023 code, alpha=4, beta=5) or a callable ``margins -> weights``.
        margin: ``"top2"`` (top-1 minus top-2 probability) or ``"pred_minus_true"``.
        reweigh_every: epochs between readout refreshes (official 1); 0 disables reweighting (plain KD,
            or fixed weights set with `set_weights`).
        reweigh_start: first epoch after which the readout runs (0 = after the first epoch, official).
        readout_epochs: epochs of readout-head training per refresh (official 1).
        readout_lr, readout_weight_decay, readout_momentum: SGD settings of the head; ``None`` = the
            student optimizer's lr / weight decay, as in the official code.
        persist_weights: keep the weights of correctly read-out examples (official) or reset them to 1.
        max_weight: optional cap on a weight (DESIGN.md §6.2).
        normalize: ``"none"`` (official mean(w*l)), ``"batch"`` (w*B/sum w, default) or ``"global"``.
        control: ``None`` or ``"random"``: up-weight a uniformly random set of the same size with the same
            weight values as the readout's wrong set (the benchmark control, DESIGN.md §3.4 E3).
        faithful_freeze_bug: reproduce the official code's freezing of every student module up to the
            readout layer after the first refresh (off by default: it is a bug, DESIGN.md §2.3-1).
        batch_schema: the field layout of every tuple batch the loaders yield, from ``x``, ``y``, ``g``,
            ``idx``, ``_`` (default ``("x", "y", "g", "idx")``; ``("x", "y", "idx")`` for loaders without
            groups). Never guessed: a batch of another length, or an index field that repeats inside a
            batch or misses examples in a readout pass, is an error (see `early_readout.batches`).
        device: where to train (default: the student's device).
        seed: seeds the random control's generator.
    """

    def __init__(
        self,
        teacher: nn.Module | torch.Tensor,
        student: nn.Module,
        num_classes: int,
        num_train: int,
        readout_layer: str = "layer1",
        readout_head: str | nn.Module = "auto",
        temperature: float = 3.0,
        kd_alpha: float = 1.0,
        weight_fn: str | Callable = "exp_pow",
        alpha: float | None = None,
        beta: float | None = None,
        margin: str = "top2",
        reweigh_every: int = 1,
        reweigh_start: int = 0,
        readout_epochs: int = 1,
        readout_lr: float | None = None,
        readout_weight_decay: float | None = None,
        readout_momentum: float = 0.9,
        persist_weights: bool = True,
        max_weight: float | None = None,
        normalize: str = "batch",
        control: str | None = None,
        faithful_freeze_bug: bool = False,
        batch_schema=DEFAULT_SCHEMA,
        device: str | torch.device | None = None,
        seed: int = 0,
    ):
        self.batch_schema = check_schema(batch_schema)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if not isinstance(num_train, int) or num_train < 1:
            raise ValueError(f"num_train must be a positive int, got {num_train!r}")
        if margin not in MARGINS:
            raise ValueError(f"unknown margin {margin!r}; choose one of {MARGINS}")
        if normalize not in NORMALIZE:
            raise ValueError(f"unknown normalize {normalize!r}; choose one of {NORMALIZE}")
        if control not in CONTROLS:
            raise ValueError(f"unknown control {control!r}; choose one of {CONTROLS}")
        if reweigh_every < 0 or reweigh_start < 0 or readout_epochs < 1:
            raise ValueError("reweigh_every and reweigh_start must be >= 0 and readout_epochs >= 1")
        if max_weight is not None and max_weight < 1:
            raise ValueError(f"max_weight must be >= 1, got {max_weight}")
        find_module(student, readout_layer)  # KeyError listing the module names
        s_classes = infer_num_classes(student)
        if s_classes is not None and s_classes != num_classes:
            raise ValueError(f"the student outputs {s_classes} classes but num_classes={num_classes}")
        if isinstance(teacher, torch.Tensor):
            if teacher.shape != (num_train, num_classes):
                raise ValueError(
                    f"precomputed teacher logits must have shape (num_train, num_classes) = "
                    f"({num_train}, {num_classes}), got {tuple(teacher.shape)}"
                )
        elif isinstance(teacher, nn.Module):
            t_classes = infer_num_classes(teacher)
            if t_classes is not None and t_classes != num_classes:
                raise ValueError(
                    f"teacher and student have different class counts: the teacher outputs {t_classes}, "
                    f"num_classes (student) is {num_classes}"
                )
        else:
            raise TypeError(f"teacher must be an nn.Module or a logits tensor, got {type(teacher).__name__}")

        self.device = torch.device(device) if device is not None else next(student.parameters()).device
        self.student = student.to(self.device)
        self.num_classes = num_classes
        self.num_train = num_train
        self.readout_layer = readout_layer
        if isinstance(readout_head, nn.Module):
            self.head = readout_head.to(self.device)
        else:
            self.head = ReadoutHead(num_classes, kind=readout_head)
        self.temperature = float(temperature)
        self.kd_alpha = float(kd_alpha)
        self.weight_fn_name = (
            weight_fn if isinstance(weight_fn, str) else getattr(weight_fn, "__name__", "custom")
        )
        self.weight_fn = get_weight_fn(weight_fn, alpha, beta)
        self.margin_kind = margin
        self.reweigh_every = int(reweigh_every)
        self.reweigh_start = int(reweigh_start)
        self.readout_epochs = int(readout_epochs)
        self.readout_lr = readout_lr
        self.readout_weight_decay = readout_weight_decay
        self.readout_momentum = readout_momentum
        self.persist_weights = persist_weights
        self.max_weight = max_weight
        self.normalize = normalize
        self.control = control
        self.faithful_freeze_bug = faithful_freeze_bug
        self._frozen: list[str] = []
        self._gen = torch.Generator().manual_seed(seed)

        self.teacher: nn.Module | None = None
        self.teacher_logits: torch.Tensor | None = None
        if isinstance(teacher, torch.Tensor):
            self.teacher_logits = teacher.detach().float().to(self.device)
        else:
            # DESIGN.md §6.8: the teacher is frozen, in eval mode, and never receives gradients
            self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        #: one weight per training example, indexed by dataset index (DESIGN.md §6.4)
        self.weights = torch.ones(num_train, device=self.device)

    # ------------------------------------------------------------------ teacher
    @torch.no_grad()
    def cache_teacher_logits(self, loader: Iterable, progress: bool = False) -> torch.Tensor:
        """Run the teacher once over ``loader`` and keep its logits by dataset index (valid without
        augmentation, as in the official setup); later batches read the cache instead of the teacher."""
        if self.teacher is None:
            if self.teacher_logits is None:
                raise RuntimeError("the distiller has neither a teacher module nor teacher logits")
            return self.teacher_logits
        out = torch.full((self.num_train, self.num_classes), float("nan"), device=self.device)
        self.teacher.eval()
        for raw in tqdm(loader, desc="teacher logits", disable=not progress, leave=False):
            b = self._unpack(raw)
            self._check_idx(b.idx)
            logits = self.teacher(b.x)
            self._check_logits(logits, "teacher")
            out[b.idx] = logits.float()
        missing = torch.isnan(out[:, 0]).sum().item()
        if missing:
            raise ValueError(
                f"the loader did not cover the training set: {missing} of {self.num_train} indices missing"
            )
        self.teacher_logits = out
        return out

    def _teacher(self, b) -> torch.Tensor:
        if self.teacher_logits is not None:
            return self.teacher_logits[b.idx]
        if self.teacher is None:
            raise RuntimeError("the distiller has neither a teacher module nor teacher logits")
        with torch.no_grad():
            return self.teacher(b.x)

    # ------------------------------------------------------------------ checks
    def _unpack(self, raw):
        return unpack_batch(raw, self.batch_schema).to(self.device)

    def _check_idx(self, idx: torch.Tensor) -> None:
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_train):
            raise IndexError(
                f"dataset indices span [{int(idx.min())}, {int(idx.max())}], outside [0, num_train="
                f"{self.num_train}): is this loader from another dataset?"
            )

    def _check_full_pass(self, idx: torch.Tensor, what: str) -> None:
        """A pass over the training set must yield every dataset index exactly once (DESIGN.md §1.4: the
        readout runs over all training data), else the weights would silently go to a few examples."""
        counts = torch.bincount(idx.long().cpu(), minlength=self.num_train)
        if (counts > 1).any():
            dup = torch.nonzero(counts > 1).flatten()[:5].tolist()
            raise ValueError(
                f"the {what} yielded dataset indices {dup} more than once: the loader's index field is not a "
                f"dataset index (check batch_schema={self.batch_schema}) or the loader samples with replacement"
            )
        seen = int((counts > 0).sum())
        if seen != self.num_train:
            raise ValueError(
                f"the {what} covered {seen} of num_train={self.num_train} dataset indices: the readout must run "
                f"over the whole training set (check the loader and batch_schema={self.batch_schema})"
            )

    def _check_logits(self, logits: torch.Tensor, who: str) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the {who} produced logits of shape {tuple(logits.shape)}, expected (B, {self.num_classes}): "
                "teacher and student must both output num_classes classes"
            )

    # ------------------------------------------------------------------ the loss
    def loss(self, batch, return_logits: bool = False):
        """Weighted distillation loss of one batch ``(x, y, idx, ...)`` and a dict of diagnostics."""
        b = self._unpack(batch)
        self._check_idx(b.idx)
        s_logits = self.student(b.x)
        t_logits = self._teacher(b)
        self._check_logits(s_logits, "student")
        self._check_logits(t_logits, "teacher")
        per_ex = distill_loss_per_example(s_logits, t_logits, b.y, self.temperature, self.kd_alpha)
        w = normalize_weights(
            self.weights[b.idx],
            self.normalize,
            float(self.weights.mean()) if self.normalize == "global" else None,
        )
        loss = (w * per_ex).mean()
        info = {"loss": float(loss.detach()), "mean_w": float(w.mean())}
        if return_logits:
            return loss, info, s_logits
        return loss, info

    # ------------------------------------------------------------------ readout
    def readout_features(self, x: torch.Tensor) -> torch.Tensor:
        """Detached student features at ``readout_layer`` (student in eval mode, no grad, early stop)."""
        with eval_mode(self.student), torch.no_grad():
            return FeatureTap(self.student, self.readout_layer, detach=True, stop=True).features(x)

    def _readout_optimizer(self, student_opt: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
        g = student_opt.param_groups[0] if student_opt is not None else {}
        lr = self.readout_lr if self.readout_lr is not None else g.get("lr", 1e-2)
        wd = (
            self.readout_weight_decay if self.readout_weight_decay is not None else g.get("weight_decay", 0.0)
        )
        return torch.optim.SGD(self.head.parameters(), lr=lr, momentum=self.readout_momentum, weight_decay=wd)

    def train_readout(self, loader: Iterable, student_opt=None, progress: bool = False) -> dict:
        """Re-initialise the head and train it for ``readout_epochs`` on detached student features.

        Only the head's parameters are optimised; the student is never put in the optimizer, never has
        ``requires_grad`` flipped and runs in eval mode, so its parameters and buffers stay unchanged.
        """
        self.head.train()
        opt = None
        n = correct = 0
        total = 0.0
        for _ in range(self.readout_epochs):
            n = correct = 0
            total = 0.0
            for raw in tqdm(loader, desc="readout", disable=not progress, leave=False):
                b = self._unpack(raw)
                feats = self.readout_features(b.x)
                if opt is None:
                    # a fresh head at every refresh (official Projector.refresh())
                    if isinstance(self.head, ReadoutHead) and self.head.fc is None:
                        self.head.build(feats)
                    elif callable(getattr(self.head, "reset_parameters", None)):
                        self.head.reset_parameters()  # type: ignore[operator]  # a user head's own method
                    opt = self._readout_optimizer(student_opt)
                logits = self.head(feats)
                loss = F.cross_entropy(logits, b.y.long())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n += len(b.y)
                correct += (logits.argmax(1) == b.y).sum().item()
                total += loss.item() * len(b.y)
        return {"readout_train_loss": total / max(n, 1), "readout_train_acc": correct / max(n, 1)}

    @torch.no_grad()
    def readout_predictions(self, loader: Iterable, progress: bool = False) -> dict[str, torch.Tensor]:
        """Readout outputs over ``loader``, sorted by dataset index: idx, y, g, probs, pred, margin, wrong."""
        if isinstance(self.head, ReadoutHead) and self.head.fc is None:
            raise RuntimeError("the readout head has not been trained yet: call train_readout first")
        out: dict[str, list] = {"idx": [], "y": [], "g": [], "probs": []}
        with eval_mode(self.head):
            for raw in tqdm(loader, desc="readout pass", disable=not progress, leave=False):
                b = self._unpack(raw)
                self._check_idx(b.idx)
                probs = F.softmax(self.head(self.readout_features(b.x)).float(), dim=1)
                out["idx"].append(b.idx)
                out["y"].append(b.y.long())
                out["g"].append(b.g if b.g is not None else torch.full_like(b.y, -1))
                out["probs"].append(probs)
        res = {k: torch.cat(v) for k, v in out.items()}
        self._check_full_pass(res["idx"], "readout pass")
        order = res["idx"].argsort()
        res = {k: v[order] for k, v in res.items()}
        res["pred"] = res["probs"].argmax(1)
        res["margin"] = margin(res["probs"], res["y"], self.margin_kind)
        res["wrong"] = res["pred"] != res["y"]
        return res

    def reweigh(self, loader: Iterable, student_opt=None, progress: bool = False) -> dict:
        """One refresh: fresh readout, train it, run it over ``loader``, re-weight its mistakes."""
        t0 = time.perf_counter()
        stats = self.train_readout(loader, student_opt, progress)
        pred = self.readout_predictions(loader, progress)
        idx, wrong = pred["idx"], pred["wrong"]
        new_w = self.weight_fn(pred["margin"][wrong]).to(self.weights)
        if self.max_weight is not None:
            new_w = new_w.clamp(max=self.max_weight)
        target = idx[wrong]
        if self.control == "random":
            # same number of examples and the same weight values, at uniformly random indices
            perm = torch.randperm(self.num_train, generator=self._gen)[: len(target)]
            target = perm.to(self.device)
        if not self.persist_weights:
            self.weights.fill_(1.0)
        self.weights[target] = new_w
        if (pred["g"] >= 0).all() and len(pred["g"]):
            # readout analysis (DESIGN.md §1.7): share of the readout's mistakes in the minority groups, when the
            # loader carries group labels (used only for reporting, never for the weights)
            minority = minority_groups(pred["g"])
            if minority:
                a = readout_analysis(wrong.cpu(), pred["g"].cpu(), minority)
                stats.update(
                    readout_minority_share=a["minority_share_of_wrong"],
                    readout_minority_recall=a["minority_recall"],
                )
        if self.faithful_freeze_bug and not self._frozen:
            self._freeze_like_official(loader)
        stats.update(
            n_wrong=int(wrong.sum()),
            frac_wrong=float(wrong.float().mean()),
            readout_acc=1.0 - float(wrong.float().mean()),
            mean_weight=float(self.weights.mean()),
            max_weight=float(self.weights.max()),
            readout_seconds=time.perf_counter() - t0,
            wrong_idx=idx[wrong].cpu(),
            upweighted_idx=target.cpu(),
        )
        return stats

    def _freeze_like_official(self, loader) -> None:
        """Reproduce the official side effect: stem..readout layer get requires_grad=False (DESIGN.md §2.3-1)."""
        b = self._unpack(next(iter(loader)))
        with eval_mode(self.student):
            names = modules_run_before(self.student, self.readout_layer, b.x[:2])
        mods = dict(self.student.named_modules())
        for n in names:
            for p in mods[n].parameters(recurse=False):
                p.requires_grad_(False)
        self._frozen = names

    def set_weights(self, weights: torch.Tensor) -> None:
        """Fix the weights (e.g. the group-balanced oracle); must have one entry per training example."""
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if weights.shape != (self.num_train,):
            raise ValueError(
                f"weights have shape {tuple(weights.shape)} but this distiller has num_train={self.num_train}: "
                "they belong to a dataset of another size"
            )
        if (weights < 0).any() or not torch.isfinite(weights).all():
            raise ValueError("weights must be finite and non-negative")
        self.weights = weights.to(self.device).clone()

    def save_weights(self, path: str | Path) -> None:
        """Write the weight vector atomically (``paperworks_shared.checkpoint``, kind ``early-readout-weights``)."""
        save_checkpoint(
            path, {"weights": self.weights.cpu()}, kind=WEIGHTS_KIND, meta={"num_train": self.num_train}
        )

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved by `save_weights`; refuses a file from a dataset of another size."""
        state, meta = read_checkpoint(path, kind=WEIGHTS_KIND)
        n = meta.get("num_train")
        w = state.get("weights")
        if not isinstance(w, torch.Tensor) or w.dim() != 1:
            raise CheckpointError(f"weights file {str(path)!r} holds no 1-D weight tensor")
        if n is not None and n != self.num_train or len(w) != self.num_train:
            raise ValueError(
                f"weights file {str(path)!r} is for a dataset of {n if n is not None else len(w)} examples, "
                f"but this distiller has num_train={self.num_train}"
            )
        self.set_weights(w)

    # ------------------------------------------------------------------ training loop
    def train_epoch(self, loader: Iterable, optimizer: torch.optim.Optimizer, progress: bool = False) -> dict:
        """One epoch of weighted distillation; returns the mean loss and train accuracy."""
        self.student.train()
        n = correct = 0
        total = 0.0
        for raw in tqdm(loader, desc="distill", disable=not progress, leave=False):
            b = self._unpack(raw)
            loss, _, logits = self.loss(b, return_logits=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n += len(b.y)
            total += loss.item() * len(b.y)
            correct += (logits.argmax(1) == b.y).sum().item()
        return {"train_loss": total / max(n, 1), "train_acc": correct / max(n, 1)}

    @torch.no_grad()
    def predict(self, loader: Iterable) -> dict[str, torch.Tensor]:
        """Student predictions over ``loader``: pred, y, g (g = -1 when the loader has no groups)."""
        preds, ys, gs = [], [], []
        with eval_mode(self.student):
            for raw in loader:
                b = self._unpack(raw)
                preds.append(self.student(b.x).argmax(1).cpu())
                ys.append(b.y.long().cpu())
                gs.append(b.g.long().cpu() if b.g is not None else torch.full_like(b.y.long().cpu(), -1))
        return {"pred": torch.cat(preds), "y": torch.cat(ys), "g": torch.cat(gs)}

    def evaluate(
        self, loader: Iterable, n_groups: int | None = None, train_group_counts=None
    ) -> dict[str, float]:
        """Average, mean-group and worst-group accuracy of the student on ``loader``; with the training
        set's group sizes ``train_group_counts`` also the train-proportion-weighted average."""
        from .metrics import group_report

        p = self.predict(loader)
        return group_report(p["pred"], p["y"], p["g"], n_groups, train_group_counts)

    def _due(self, epoch: int) -> bool:
        return (
            self.reweigh_every > 0
            and epoch >= self.reweigh_start
            and ((epoch - self.reweigh_start) % self.reweigh_every == 0)
        )

    def state_dict(self) -> dict:
        return {
            "student": self.student.state_dict(),
            "weights": self.weights.cpu(),
            "num_train": self.num_train,
            "frozen": list(self._frozen),
            "gen": self._gen.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_train") != self.num_train:
            raise ValueError(
                f"checkpoint is for num_train={state.get('num_train')}, this distiller has {self.num_train}"
            )
        self.student.load_state_dict(state["student"])
        self.set_weights(state["weights"])
        self._gen.set_state(state["gen"])
        if state.get("frozen"):
            mods = dict(self.student.named_modules())
            for n in state["frozen"]:
                for p in mods[n].parameters(recurse=False):
                    p.requires_grad_(False)
            self._frozen = list(state["frozen"])

    def fit(
        self,
        train_loader: Iterable,
        epochs: int,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.1,
        val_loader: Iterable | None = None,
        selector: str = "val_wga",
        n_groups: int | None = None,
        train_group_counts=None,
        readout_loader: Iterable | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = True,
        restore_best: bool = True,
        progress: bool = True,
        callbacks: Iterable[Callable[[int, dict], None]] = (),
    ) -> History:
        """Train the student for ``epochs`` with readout refreshes; select and restore the best epoch.

        ``optimizer`` defaults to the official SGD(lr, momentum=0.9, weight_decay). ``selector`` picks the
        epoch by validation worst-group (``val_wga``, uses val group labels, as the official code does),
        ``val_avg`` (label-only), ``val_mean_group`` or ``last``. With ``checkpoint_dir`` the full state
        (student, optimizer, weights, RNG, history) is saved after every epoch to ``last.pt`` and a
        later call with ``resume=True`` continues from it (bit-exact when the loader shuffles with torch's
        global RNG, which the checkpoint restores; a loader's own ``generator`` is not saved).
        ``readout_loader`` defaults to ``train_loader``.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if selector not in SELECTORS:
            raise ValueError(f"unknown selector {selector!r}; choose one of {SELECTORS}")
        if selector != "last" and val_loader is None:
            raise ValueError(f"selector {selector!r} needs a val_loader (or use selector='last')")
        if optimizer is None:
            optimizer = torch.optim.SGD(
                self.student.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
            )
        readout_loader = readout_loader if readout_loader is not None else train_loader
        hist = History()
        best_state = None
        start = 0
        ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
        if ckpt is not None and resume and ckpt.is_file():
            blob = load_checkpoint(ckpt, self.device)
            try:
                self.load_state_dict(blob["distiller"])
                optimizer.load_state_dict(blob["optimizer"])
            except (KeyError, RuntimeError, ValueError) as e:
                raise CheckpointError(
                    f"checkpoint {str(ckpt)!r} does not fit this run ({first_line(e)}); "
                    "delete it or train without resuming"
                ) from e
            torch.set_rng_state(blob["torch_rng"])
            hist = History(**blob["history"])
            best_state = blob["best_state"]
            start = blob["epoch"] + 1
        bar = tqdm(range(start, epochs), desc="epochs", disable=not progress, initial=start, total=epochs)
        for epoch in bar:
            t0 = time.perf_counter()
            rec = {"epoch": epoch, **self.train_epoch(train_loader, optimizer, progress=False)}
            rec["distill_seconds"] = time.perf_counter() - t0
            rec["readout_seconds"] = 0.0
            if self._due(epoch):
                st = self.reweigh(readout_loader, optimizer)
                hist.reweighs.append(
                    {
                        "epoch": epoch,
                        "wrong_idx": st.pop("wrong_idx"),
                        "upweighted_idx": st.pop("upweighted_idx"),
                    }
                )
                rec.update(st)
            if val_loader is not None:
                rec.update(
                    {
                        f"val_{k}": v
                        for k, v in self.evaluate(val_loader, n_groups, train_group_counts).items()
                    }
                )
            score = epoch if selector == "last" else rec[_SELECTOR_KEYS[selector]]
            if hist.best_score is None or score > hist.best_score:
                hist.best_score, hist.best_epoch = float(score), epoch
                best_state = copy.deepcopy(self.student.state_dict())
            hist.epochs.append(rec)
            for cb in callbacks:
                cb(epoch, rec)
            bar.set_postfix(
                loss=f"{rec['train_loss']:.3f}",
                **({"val_wga": f"{rec['val_worst_group_acc']:.3f}"} if "val_worst_group_acc" in rec else {}),
            )
            if ckpt is not None:
                # only tensors, numbers, strings and containers: loadable with weights_only=True
                save_checkpoint(
                    ckpt,
                    {
                        "distiller": self.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "history": dataclasses.asdict(hist),
                        "best_state": best_state,
                        "epoch": epoch,
                    },
                    kind=FIT_KIND,
                )
        if restore_best and best_state is not None:
            self.student.load_state_dict(best_state)
        return hist
