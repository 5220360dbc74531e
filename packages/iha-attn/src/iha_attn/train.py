"""Training loops for the synthetic tasks (seeded, tqdm, JSON-friendly results)."""

from __future__ import annotations

import time

import torch
from torch import nn
from tqdm.auto import tqdm

from paperworks_shared.optim import warmup_cosine

from .mixing import IHAMixing
from .models import PolyFilterModel, RelCompModel, TinyLM, param_count
from .tasks import MultiKeySpec, PolyFilterTask, multikey_batch, relcomp_batch


def _optimizer(model: nn.Module, lr: float, mix_lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW; IHA's α/R in their own group without weight decay (DESIGN.md pitfall 12)."""
    mix = {id(p) for m in model.modules() if isinstance(m, IHAMixing) for p in m.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in mix]
    mixp = [p for p in model.parameters() if p.requires_grad and id(p) in mix]
    groups = [{"params": rest, "weight_decay": 0.01}]
    if mixp:
        groups.append({"params": mixp, "weight_decay": 0.0, "lr": mix_lr or lr})
    return torch.optim.AdamW(groups, lr=lr)


def _loop(model, step_fn, steps, lr, desc, progress, log_every=25, mix_lr=None):
    opt = _optimizer(model, lr, mix_lr)
    # the repo's one schedule (issue 20.7): linear warm-up over 10% of the steps, cosine to 1% of the lr
    sched = warmup_cosine(opt, steps, warmup_steps=steps // 10, floor=0.01)
    losses = []
    t0 = time.time()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        loss = step_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            losses.append((step, loss.item()))
    return losses, time.time() - t0


def train_polyfilter(heads: int, P: int, *, k: int = 4, steps: int = 1500, batch: int = 64, lr: float = 1e-2, mix_lr: float | None = None, init: str = "identity_noise", seed: int = 0, progress: bool = False, task_seed: int = 0, device: torch.device | str | None = None) -> dict:  # fmt: skip
    """Fit [X, AX, …, A^{k−1}X] with one linear-attention layer; returns final test MSE and params.

    Data is drawn on the CPU (seeded generators) and moved to ``device`` (default CPU)."""
    dev = torch.device(device or "cpu")
    torch.manual_seed(seed)
    task = PolyFilterTask(k=k, seed=task_seed)
    model = PolyFilterModel(task, heads, P, init=init).to(dev)
    g = torch.Generator().manual_seed(seed + 1)

    def step():
        x, y = task.batch(batch, g)
        return nn.functional.mse_loss(model(x.to(dev)), y.to(dev))

    losses, secs = _loop(model, step, steps, lr, f"polyfilter H={heads} P={P}", progress, mix_lr=mix_lr)
    with torch.no_grad():
        x, y = task.batch(1024, torch.Generator().manual_seed(12345))
        mse = nn.functional.mse_loss(model(x.to(dev)).cpu(), y).item()
        var = y.var().item()
    return {"task": "polyfilter", "heads": heads, "P": P, "k": k, "steps": steps, "test_mse": mse,
            "rel_mse": mse / var, "params": param_count(model), "seconds": secs, "losses": losses}  # fmt: skip


def train_multikey(layers: list[tuple[int, int | None]], *, spec: MultiKeySpec | None = None, d_model: int = 64, heads: int = 4, steps: int = 600, batch: int = 32, lr: float = 3e-3, seed: int = 0, progress: bool = False, name: str = "", device: torch.device | str | None = None) -> dict:  # fmt: skip
    """Causal LM on multi-key retrieval; accuracy of the value predicted after ``? k1 k2``."""
    dev = torch.device(device or "cpu")
    spec = spec or MultiKeySpec()
    torch.manual_seed(seed)
    model = TinyLM(spec.vocab_size, d_model, heads, layers).to(dev)
    g = torch.Generator().manual_seed(seed + 1)

    def step():
        toks, ans = multikey_batch(spec, batch, g)
        return nn.functional.cross_entropy(model(toks.to(dev))[:, -1], ans.to(dev))

    losses, secs = _loop(model, step, steps, lr, f"multikey {name}", progress)
    model.eval()
    with torch.no_grad():
        toks, ans = multikey_batch(spec, 512, torch.Generator().manual_seed(999))
        acc = (model(toks.to(dev))[:, -1].argmax(-1).cpu() == ans).float().mean().item()
    return {"task": "multikey", "arm": name, "layers": layers, "steps": steps, "accuracy": acc,
            "chance": 1.0 / spec.n_values, "params": param_count(model), "seconds": secs, "losses": losses}  # fmt: skip


def train_relcomp(P: int, *, m: int = 5, hops: int = 2, p: float = 0.4, steps: int = 400, batch: int = 32, lr: float = 3e-3, seed: int = 0, progress: bool = False, device: torch.device | str | None = None) -> dict:  # fmt: skip
    """One bidirectional layer on relation composition; per-position accuracy on fresh relations."""
    dev = torch.device(device or "cpu")
    torch.manual_seed(seed)
    model = RelCompModel(m, P=P).to(dev)
    g = torch.Generator().manual_seed(seed + 1)

    def step():
        x, y = relcomp_batch(m, batch, hops, p, g)
        return nn.functional.binary_cross_entropy_with_logits(model(x.to(dev)), y.to(dev))

    losses, secs = _loop(model, step, steps, lr, f"relcomp P={P}", progress)
    model.eval()
    with torch.no_grad():
        x, y = relcomp_batch(m, 512, hops, p, torch.Generator().manual_seed(999))
        acc = ((model(x.to(dev)) > 0).float().cpu() == y).float().mean().item()
        base = max(y.mean().item(), 1 - y.mean().item())
    return {"task": f"relcomp{hops}", "P": P, "m": m, "steps": steps, "accuracy": acc, "majority": base,
            "params": param_count(model), "seconds": secs, "losses": losses}  # fmt: skip
