"""Meta-trainers: iMAML (implicit gradients, the official MetaDOCK path) and MAML (unrolled).

Both adapt per task with MetaDOCK's two-step inner update and meta-learn theta = (weights, gate
logits). `backend="torch.func"` (default, maintained) computes the inner loop with function
transforms; `backend="higher"` runs it through `higher`'s differentiable SGD (optional, unmaintained
library, kept for comparison). MAML with torch.func can also vmap over the tasks of a meta-batch.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .dock import AdaptedTask, MetaDOCK, Params
from .implicit import CGBreakdown, hvp_fn, implicit_meta_grad
from .tasks import Task

BACKENDS = ("torch.func", "higher")


def _require_higher():
    try:
        import higher
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("backend='higher' needs the `higher` package: pip install 'higher>=0.2.1'") from e
    return higher


def outer_loss(dock: MetaDOCK, params: Params, x, y, t: int, total: int, gates: bool = True) -> torch.Tensor:
    """Query loss at the adapted point: CE through the STE masks (+ budget terms for the gates).

    The STE forward equals the hard-mask forward, so the weight gradient equals that of the hard-mask
    CE (the official two-part outer gradient) and psi gets CE + budget + L1 gradients."""
    loss = F.cross_entropy(dock.fforward(params, x, "ste"), y)
    return loss + dock.budget_loss(params, t, total) if gates else loss


@dataclass
class EvalResult:
    acc: float
    ci95: float
    remaining_mean: float
    remaining_max: float
    per_task: list[float]

    def as_dict(self) -> dict:
        """Plain JSON-able summary; ci95 is None (not NaN) when it is undefined (a single task)."""
        return {
            "acc": self.acc,
            "ci95": self.ci95 if math.isfinite(self.ci95) else None,
            "remaining_mean": self.remaining_mean,
            "remaining_max": self.remaining_max,
        }


class _Base:
    def __init__(
        self,
        dock: MetaDOCK,
        inner_lr: float,
        inner_steps: int,
        outer_lr: float,
        outer_eps: float,
        meta_batch: int,
        backend: str,
        adapt_gates: bool,
        dense: bool,
        train_gates: bool = True,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "higher":
            _require_higher()
        if inner_steps < 0 or inner_lr <= 0 or meta_batch < 1:
            raise ValueError("inner_steps >= 0, inner_lr > 0 and meta_batch >= 1 are required")
        self.dock, self.inner_lr, self.inner_steps = dock, inner_lr, inner_steps
        self.meta_batch, self.backend = meta_batch, backend
        self.adapt_gates = adapt_gates and not dense
        self.dense = dense  # dense=True: masks off entirely (dense (i)MAML baseline / pretraining)
        # train_gates=False freezes the gate logits (e.g. the random-mask control)
        self.train_gates = train_gates and not dense
        params = [p for n, p in dock.named_parameters() if self._trainable(n)]
        self.opt = torch.optim.Adam(params, lr=outer_lr, eps=outer_eps)
        # outside fit() (evaluation, test-time adaptation) the budget weight is at its final value
        self.step_count = 1
        self.total_steps = 1
        self.history: list[dict] = []

    @property
    def device(self) -> torch.device:
        """Where the dock's parameters live: tasks are moved there (`dock.to(device)` first)."""
        return next(self.dock.parameters()).device

    def _trainable(self, name: str) -> bool:
        return self.train_gates or not self.dock.is_gate(name)

    def _dock_adapt(self, task: Task, steps: int, **kw) -> AdaptedTask:
        """The dock's inner loop on `task`'s support set with this trainer's settings (masks off if dense;
        with adapt_gates False the gates get no gradient, so the budget schedule t/T plays no role)."""
        with _dense(self.dock) if self.dense else contextlib.nullcontext():
            return self.dock.adapt(
                task.support_x,
                task.support_y,
                steps,
                self.inner_lr,
                self.step_count,
                self.total_steps,
                adapt_gates=self.adapt_gates,
                **kw,
            )

    def meta_gradient(self, task: Task) -> tuple[dict[str, torch.Tensor], float, float]:
        """(meta-gradient by parameter name, query loss, remaining fraction) for one task."""
        raise NotImplementedError

    def _mode(self) -> str:
        return "off" if self.dense else "hard"

    def adapt(self, task: Task, steps: int | None = None) -> AdaptedTask:
        """Adapt to a task's support set (no graph, theta untouched)."""
        raise NotImplementedError

    def meta_step(self, tasks: Sequence[Task]) -> dict:
        grads = {n: torch.zeros_like(p) for n, p in self.dock.named_parameters()}
        losses, rem = [], []
        for task in tasks:
            g, loss, r = self.meta_gradient(task)
            for n, v in g.items():
                grads[n] += v / len(tasks)
            losses.append(loss)
            rem.append(r)
        self.opt.zero_grad(set_to_none=True)
        for n, p in self.dock.named_parameters():
            if self._trainable(n):
                p.grad = grads[n]
        self.opt.step()
        self.step_count += 1
        rec = {
            "step": self.step_count,
            "query_loss": float(np.mean(losses)),
            "remaining": float(np.mean(rem)),
        }
        self.history.append(rec)
        return rec

    def fit(
        self,
        sampler,
        meta_steps: int,
        val_tasks: Sequence[Task] | None = None,
        val_every: int = 0,
        progress: bool = True,
    ) -> list[dict]:
        """Meta-train for `meta_steps`; with val_tasks, keep the best state by META-VALIDATION accuracy
        (never test classes: the official scripts select on test, which we do not copy)."""
        self.total_steps = meta_steps
        best, best_state = -1.0, None
        bar = tqdm(range(meta_steps), desc=type(self).__name__, disable=not progress, leave=False)
        for i in bar:
            self.step_count = i
            try:
                rec = self.meta_step([t.to(self.device) for t in sampler.sample_batch(self.meta_batch)])
            except CGBreakdown as e:
                raise FloatingPointError(
                    f"meta-training diverged at step {i + 1}/{meta_steps}: {e}; lower the learning rates"
                ) from e
            if not math.isfinite(rec["query_loss"]) or not all(
                torch.isfinite(p).all() for p in self.dock.parameters()
            ):
                raise FloatingPointError(
                    f"meta-training diverged at step {i + 1}/{meta_steps} (query loss "
                    f"{rec['query_loss']}, or non-finite parameters): lower the inner/outer learning rate"
                )
            bar.set_postfix(loss=f"{rec['query_loss']:.3f}", r=f"{rec['remaining']:.2f}")
            if val_tasks is not None and val_every and ((i + 1) % val_every == 0 or i + 1 == meta_steps):
                acc = self.evaluate(val_tasks, progress=False).acc
                rec["val_acc"] = acc
                if acc > best:
                    best, best_state = acc, {k: v.detach().clone() for k, v in self.dock.state_dict().items()}
        if best_state is not None:
            self.dock.load_state_dict(best_state)
        self.step_count = self.total_steps  # test-time adaptation uses the final budget weight
        return self.history

    def evaluate(self, tasks: Sequence[Task], progress: bool = True) -> EvalResult:
        accs, rems = [], []
        for task in tqdm(tasks, desc="evaluate", disable=not progress, leave=False):
            task = task.to(self.device)
            adapted = self.adapt(task)
            with torch.no_grad():
                pred = self.dock.fforward(adapted.params, task.query_x, self._mode()).argmax(-1)
            accs.append(float((pred == task.query_y).float().mean()))
            rems.append(1.0 if self.dense else adapted.remaining())
        a = np.asarray(accs)
        return EvalResult(
            float(a.mean()),
            float(1.96 * a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan"),
            float(np.mean(rems)),
            float(np.max(rems)),
            accs,
        )


class IMAMLTrainer(_Base):
    """iMAML meta-training of MetaDOCK.

    mode="faithful": the official code (no proximal term inside the inner loss; one pull-back step
    phi -= alpha*lam*(phi - theta); CG on ((1+c) I + H/(lam+lam_d))). mode="exact": true iMAML
    (proximal gradient lam (phi - theta) in every inner step; CG on (I + H/lam)).
    """

    def __init__(
        self,
        dock: MetaDOCK,
        inner_lr: float = 5e-3,
        inner_steps: int = 16,
        lam: float = 0.5,
        cg_steps: int | None = None,
        cg_damping: float = 1.0,
        lam_damping: float = 10.0,
        mode: str = "faithful",
        outer_lr: float = 5e-5,
        outer_eps: float = 1e-3,
        meta_batch: int = 4,
        backend: str = "torch.func",
        adapt_gates: bool = True,
        dense: bool = False,
        train_gates: bool = True,
        cg_tol: float | None = None,
    ):
        if mode not in ("faithful", "exact"):
            raise ValueError(f"mode must be 'faithful' or 'exact', got {mode!r}")
        if cg_steps is None:  # official code: 5 iterations; exact iMAML: CG to tolerance (capped)
            cg_steps = 5 if mode == "faithful" else 50
        if isinstance(cg_steps, bool) or not isinstance(cg_steps, int) or cg_steps < 0:
            raise ValueError(f"cg_steps must be an int >= 0, got {cg_steps!r}")
        if not (lam > 0 and math.isfinite(lam)):
            raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
        if cg_tol is not None and not (cg_tol >= 0 and math.isfinite(cg_tol)):
            raise ValueError(f"cg_tol must be a finite number >= 0, got {cg_tol!r}")
        super().__init__(
            dock,
            inner_lr,
            inner_steps,
            outer_lr,
            outer_eps,
            meta_batch,
            backend,
            adapt_gates,
            dense,
            train_gates,
        )
        self.mode, self.lam, self.cg_steps = mode, lam, cg_steps
        self.cg_damping, self.lam_damping = cg_damping, lam_damping
        # relative CG residual at which the solve counts as converged; None: 100 x machine epsilon
        # of the parameters' dtype (1.2e-5 in float32, 2.2e-14 in float64)
        self.cg_tol = cg_tol
        self._cg_log: list[tuple[int, float]] = []
        self._warned = False

    def _tol(self, dtype: torch.dtype) -> float:
        return self.cg_tol if self.cg_tol is not None else 100 * torch.finfo(dtype).eps

    def meta_step(self, tasks: Sequence[Task]) -> dict:
        """One outer step; the record also holds the largest CG iteration count and final relative
        residual over the meta-batch (`cg_iters`, `cg_residual`)."""
        self._cg_log = []
        rec = super().meta_step(tasks)
        if self._cg_log:
            rec["cg_iters"] = max(i for i, _ in self._cg_log)
            rec["cg_residual"] = max(r for _, r in self._cg_log)
        return rec

    def adapt(self, task: Task, steps: int | None = None) -> AdaptedTask:
        steps = self.inner_steps if steps is None else steps
        prox = self.lam if self.mode == "exact" else 0.0
        pull = self.lam if self.mode == "faithful" else 0.0
        if self.backend == "higher" and not self.dense:
            return _higher_adapt(self, task, steps, prox, pull, track=False)
        return self._dock_adapt(task, steps, prox_lam=prox, pullback_lam=pull)

    def meta_gradient(self, task: Task):
        dock = self.dock
        adapted = self.adapt(task)
        phi = adapted.params
        # implicit (CG) gradient for what the inner loop adapts; gates that are meta-learned but not
        # adapted (shared-mask ablation) get the plain outer gradient (d phi / d theta = I for them)
        adapted_names = [n for n in phi if not dock.is_gate(n) or self.adapt_gates]
        direct_names = [n for n in phi if dock.is_gate(n) and not self.adapt_gates and self.train_gates]
        mode = "off" if self.dense else "ste"
        if self.dense:
            loss_q = F.cross_entropy(dock.fforward(phi, task.query_x, "off"), task.query_y)
        else:
            loss_q = outer_loss(dock, phi, task.query_x, task.query_y, self.step_count, self.total_steps)
        wanted = adapted_names + direct_names
        gl = torch.autograd.grad(loss_q, [phi[n] for n in wanted], allow_unused=True)
        gd = {n: (gi if gi is not None else torch.zeros_like(phi[n])).detach() for gi, n in zip(gl, wanted)}
        g = torch.cat([gd[n].reshape(-1) for n in adapted_names])

        def support_loss(plist):
            p = dict(phi)
            p.update(zip(adapted_names, plist))
            return F.cross_entropy(dock.fforward(p, task.support_x, mode), task.support_y)

        hvp = hvp_fn(support_loss, [phi[n] for n in adapted_names])
        x, iters, resid = implicit_meta_grad(
            hvp,
            g,
            self.lam,
            self.mode,
            self.cg_steps,
            self.cg_damping,
            self.lam_damping,
            tol=self._tol(g.dtype),
            info=True,
        )
        self._cg_log.append((iters, resid))
        if self.mode == "exact" and resid > self._tol(g.dtype) and not self._warned:
            self._warned = True
            warnings.warn(
                f"exact iMAML: CG stopped after {iters} steps at relative residual {resid:.2g} "
                f"(> tol {self._tol(g.dtype):.2g}); the meta-gradient is approximate (the operator "
                "I + H/lam may be indefinite: raise lam or cg_steps). Per-step values are in history.",
                RuntimeWarning,
                stacklevel=2,
            )
        out, i = {n: gd[n] for n in direct_names}, 0
        for n in adapted_names:
            k = phi[n].numel()
            out[n] = x[i : i + k].view_as(phi[n])
            i += k
        return out, float(loss_q.detach()), (1.0 if self.dense else adapted.remaining())


class MAMLTrainer(_Base):
    """MAML meta-training of MetaDOCK, second-order (default) or first-order, unrolled through the
    two-step inner loop. Memory grows with inner_steps (the graph is kept); see the benchmark."""

    def __init__(
        self,
        dock: MetaDOCK,
        inner_lr: float = 0.05,
        inner_steps: int = 5,
        first_order: bool = False,
        outer_lr: float = 1e-3,
        outer_eps: float = 1e-8,
        meta_batch: int = 4,
        backend: str = "torch.func",
        vmap_tasks: bool = False,
        adapt_gates: bool = True,
        dense: bool = False,
        train_gates: bool = True,
    ):
        super().__init__(
            dock,
            inner_lr,
            inner_steps,
            outer_lr,
            outer_eps,
            meta_batch,
            backend,
            adapt_gates,
            dense,
            train_gates,
        )
        if vmap_tasks and backend != "torch.func":
            raise ValueError("vmap_tasks needs backend='torch.func'")
        self.first_order, self.vmap_tasks = first_order, vmap_tasks

    def adapt(self, task: Task, steps: int | None = None) -> AdaptedTask:
        steps = self.inner_steps if steps is None else steps
        return self._dock_adapt(task, steps)

    def task_loss_fn(self):
        """A pure function theta -> query loss after adaptation (torch.func path)."""
        dock, lr, K, fo = self.dock, self.inner_lr, self.inner_steps, self.first_order
        t, T, adapt_gates = self.step_count, self.total_steps, self.adapt_gates

        def loss_a(w, g, xs, ys):  # step A: weights, hard masks
            return F.cross_entropy(dock.fforward({**w, **g}, xs, "hard"), ys)

        def loss_b(g, w, xs, ys):  # step B: gates through the STE, + budget and L1
            return F.cross_entropy(dock.fforward({**w, **g}, xs, "ste"), ys) + dock.budget_loss(
                {**w, **g}, t, T
            )

        def fn(theta: Params, xs, ys, xq, yq):
            phi = theta
            for _ in range(K):
                w, g = dock.split(phi)
                gw = torch.func.grad(loss_a)(w, g, xs, ys)
                if adapt_gates:
                    gg = torch.func.grad(loss_b)(g, w, xs, ys)
                else:
                    gg = {k: torch.zeros_like(v) for k, v in g.items()}
                grads = {**gw, **gg}
                if fo:
                    grads = {k: v.detach() for k, v in grads.items()}
                phi = {k: phi[k] - lr * grads[k] for k in phi}
            return outer_loss(dock, phi, xq, yq, t, T)

        return fn

    def meta_gradient(self, task: Task):
        theta = {n: p.detach() for n, p in self.dock.named_parameters()}
        if self.backend == "higher":
            adapted = _higher_adapt(
                self, task, self.inner_steps, 0.0, 0.0, track=not self.first_order, theta_live=True
            )
            loss = outer_loss(
                self.dock, adapted.params, task.query_x, task.query_y, self.step_count, self.total_steps
            )
            live = dict(self.dock.named_parameters())
            if self.first_order:
                gphi = torch.autograd.grad(loss, [adapted.params[n] for n in live], allow_unused=True)
            else:
                gphi = torch.autograd.grad(loss, list(live.values()), allow_unused=True)
            grads = {
                n: (g if g is not None else torch.zeros_like(p)) for (n, p), g in zip(live.items(), gphi)
            }
            return grads, float(loss.detach()), adapted.remaining()
        fn = self.task_loss_fn()
        grads, value = torch.func.grad_and_value(fn)(
            theta, task.support_x, task.support_y, task.query_x, task.query_y
        )
        rem = float(self.dock.remaining(theta, ste=False))
        return grads, float(value), rem

    def meta_step(self, tasks: Sequence[Task]) -> dict:
        if not self.vmap_tasks:
            return super().meta_step(tasks)
        theta = {n: p.detach() for n, p in self.dock.named_parameters()}
        xs, ys, xq, yq = (
            torch.stack([getattr(t, a) for t in tasks])
            for a in ("support_x", "support_y", "query_x", "query_y")
        )
        g_fn = torch.func.vmap(torch.func.grad_and_value(self.task_loss_fn()), in_dims=(None, 0, 0, 0, 0))
        grads, values = g_fn(theta, xs, ys, xq, yq)
        self.opt.zero_grad(set_to_none=True)
        for n, p in self.dock.named_parameters():
            if self._trainable(n):
                p.grad = grads[n].mean(0)
        self.opt.step()
        self.step_count += 1
        rec = {
            "step": self.step_count,
            "query_loss": float(values.mean()),
            "remaining": float(self.dock.remaining(theta, ste=False)),
        }
        self.history.append(rec)
        return rec


class _dense:
    """Context: every gate off (dense network)."""

    def __init__(self, dock):
        from .gates import mask_mode

        self.cm = mask_mode(dock, "off")

    def __enter__(self):
        return self.cm.__enter__()

    def __exit__(self, *a):
        return self.cm.__exit__(*a)


def _higher_adapt(
    trainer: _Base, task: Task, steps: int, prox: float, pull: float, track: bool, theta_live: bool = False
) -> AdaptedTask:
    """The two-step inner loop run through higher's DifferentiableSGD (same update as torch.func)."""
    higher = _require_higher()
    dock = trainer.dock
    names = [n for n, _ in dock.named_parameters()]
    opt = torch.optim.SGD(dock.parameters(), lr=trainer.inner_lr)
    theta = {n: p.detach() for n, p in dock.named_parameters()}
    with higher.innerloop_ctx(dock, opt, copy_initial_weights=False, track_higher_grads=track) as (
        fmodel,
        diffopt,
    ):
        for _ in range(steps):
            params = dict(zip(names, fmodel.parameters()))
            grads = dock.inner_grads(
                params,
                task.support_x,
                task.support_y,
                trainer.step_count,
                trainer.total_steps,
                create_graph=track,
                gates=trainer.adapt_gates,
            )
            if prox:
                grads = {n: grads[n] + prox * (params[n] - theta[n]) for n in names}
            glist = [grads[n] for n in names]
            cheap = sum((p * 0).sum() for p in fmodel.parameters())  # grads come from the callback
            diffopt.step(cheap, grad_callback=lambda _g, gl=glist: gl)
        params = dict(zip(names, fmodel.parameters()))
    if pull:
        params = {n: v - trainer.inner_lr * pull * (v - theta[n]) for n, v in params.items()}
    if not track:
        params = {n: v.detach().requires_grad_(True) for n, v in params.items()}
    return AdaptedTask(dock, params)


def timed(fn, *args, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of fn(*args)."""
    for _ in range(warmup):
        fn(*args)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def iter_batches(seq: Iterable, n: int):
    buf = []
    for x in seq:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf
