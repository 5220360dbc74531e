"""The small-world PairRL study as a resumable run: config file, warm start, RL per mode on the torch
reference trainer or the TRL trainer, checkpoints, per-step metrics (jsonl) and evaluation.

Layout under ``out``: ``seed<S>/warm_start/`` (SFT model), ``seed<S>/<mode>/step-<N>/`` checkpoints
(``save_pretrained`` model + tokenizer, plus ``trainer_state.pt`` for the torch backend; TRL writes its
own ``checkpoint-<N>/``), ``seed<S>/<mode>/final/`` and ``seed<S>/<mode>/metrics.jsonl``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paperworks_shared.models import load_model, save_model

from . import world
from .trainer import PairRLConfig, evaluate, sft, train

BACKENDS = ("torch", "trl")


@dataclass
class RunConfig:
    """Everything a study run needs; config files (TOML / YAML) hold these keys at top level, plus an
    optional ``[trl]`` table of extra ``GRPOConfig`` options (e.g. ``use_vllm = true``)."""

    backend: str = "torch"
    model: dict = field(default_factory=dict)  # tiny_causal_lm("llama", **model) overrides (hidden_size, ...)
    modes: tuple[str, ...] = ("pair", "point", "rl")
    seeds: tuple[int, ...] = (0,)
    sft_steps: int = 3000
    sft_lr: float = 3e-3
    seen_frac: float = 0.6
    sft_solve_rate: float = 0.75
    sft_judge_acc: float = 0.9
    steps: int = 40
    problems_per_step: int = 16
    solver_rollouts: int = 4
    judge_rollouts: int = 4
    lam: float = 1.0
    lr: float = 1e-3
    temperature: float = 1.0
    threshold: float | None = 0.2
    rating_norm: str = "minus1_over9"
    judge_baseline: str = "problem"
    eval_problems: int = 80
    budget: float = 1.0
    out: str | None = None
    save_every: int = 0
    resume: bool = False
    cache_warm_start: bool = False  # reuse the SFT model from $PAPERWORKS_CACHE (benchmarks)
    trl: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        self.modes, self.seeds = tuple(self.modes), tuple(int(s) for s in self.seeds)
        bad = [m for m in self.modes if m not in ("pair", "point", "rl")]
        if bad or not self.modes:
            raise ValueError(f"modes must be a non-empty subset of pair, point, rl; got {self.modes}")
        if (self.save_every or self.resume) and not self.out:
            raise ValueError("--save-every / --resume need an output folder (--out)")

    def pairrl(self, mode: str, seed: int) -> PairRLConfig:
        return PairRLConfig(
            mode=mode,
            solver_rollouts=self.solver_rollouts,
            judge_rollouts=self.judge_rollouts,
            problems_per_step=self.problems_per_step,
            lam=self.lam,
            lr=self.lr,
            temperature=self.temperature,
            threshold=self.threshold,
            rating_norm=self.rating_norm,
            judge_baseline=self.judge_baseline,
            steps=self.steps,
            seed=seed,
        )


def load_config(path: str | Path) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml`` / ``.yml``) config; unknown keys raise ValueError."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    if p.suffix == ".toml":
        import tomllib

        data = tomllib.loads(p.read_text())
    elif p.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(p.read_text()) or {}
    else:
        raise ValueError(f"config must be .toml, .yaml or .yml, got {p.name}")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{p}: unknown config keys {unknown}; known: {sorted(known)}")
    return data


def _latest_step(folder: Path) -> Path | None:
    ckpts = [p for p in folder.glob("step-*") if (p / "trainer_state.pt").is_file()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[1]), default=None)


def warm_start(cfg: RunConfig, seed: int, tok, progress: bool = False):
    """SFT warm start (cached under ``out/seed<S>/warm_start`` when ``out`` is set and ``resume``)."""
    from paperworks_shared.cache import cache_dir, is_complete
    from paperworks_shared.models import tiny_causal_lm
    from paperworks_shared.train import save_trained

    key = {
        "what": "v1-infer pairrl warm start",
        "v": 2,  # v2: saved by save_trained (metrics.json)
        "world": [world.MOD, world.pair_prompt((1, 2), "3", "4"), world.point_prompt((1, 2), "3")],
        "seed": seed,
        "model": cfg.model,
        **{
            k: getattr(cfg, k)
            for k in ("sft_steps", "sft_lr", "seen_frac", "sft_solve_rate", "sft_judge_acc")
        },
    }
    cached = cache_dir("v1-infer-pairrl", key) if cfg.cache_warm_start else None
    if cached is not None and is_complete(cached):
        info = json.loads((cached / "metrics.json").read_text())
        return load_model(cached)[0], {**info, "cached": True}
    folder = Path(cfg.out) / f"seed{seed}" / "warm_start" if cfg.out else None
    if folder is not None and cfg.resume and (folder / "config.json").is_file():
        return load_model(folder)[0], {
            "sft_loss_first": float("nan"),
            "sft_loss_last": float("nan"),
            "cached": True,
        }
    torch.manual_seed(seed)
    model = tiny_causal_lm("llama", seed=seed, **cfg.model)
    ex = world.sft_examples(
        4000,
        np.random.default_rng(seed),
        solve_rate=cfg.sft_solve_rate,
        judge_acc=cfg.sft_judge_acc,
        seen_frac=cfg.seen_frac,
    )
    curve = sft(model, tok, ex, cfg.sft_steps, lr=cfg.sft_lr, seed=seed, progress=progress)
    info = {"sft_loss_first": float(np.mean(curve[:10])), "sft_loss_last": float(np.mean(curve[-10:]))}
    if folder is not None:
        save_model(model, tok, folder)
    if cached is not None:
        save_trained(model, cached, info, key)
    return model, info


def train_mode_torch(model, tok, cfg: RunConfig, mode: str, seed: int, progress: bool = False) -> list[dict]:
    """Reference trainer with jsonl metrics, checkpoints every ``save_every`` steps and resume."""
    pc = cfg.pairrl(mode, seed)
    folder = Path(cfg.out) / f"seed{seed}" / mode if cfg.out else None
    start, opt_state = 0, None
    if folder is not None and cfg.resume:
        last = _latest_step(folder)
        if last is not None:
            state = torch.load(last / "trainer_state.pt", weights_only=False)
            model.load_state_dict(load_model(last)[0].state_dict())
            start, opt_state = state["step"] + 1, state["optimizer"]
    metrics = None
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        metrics = open(folder / "metrics.jsonl", "a" if start else "w")

    def callback(step, entry, opt):
        if metrics:
            metrics.write(json.dumps({"seed": seed, "mode": mode, **entry}) + "\n")
            metrics.flush()
        if folder and cfg.save_every and (step + 1) % cfg.save_every == 0:
            save_model(model, tok, folder / f"step-{step + 1}")
            torch.save(
                {"step": step, "optimizer": opt.state_dict()},
                folder / f"step-{step + 1}" / "trainer_state.pt",
            )

    try:
        log = train(
            model, tok, pc, progress=progress, start_step=start, optimizer_state=opt_state, callback=callback
        )
    finally:
        if metrics:
            metrics.close()
    if folder:
        save_model(model, tok, folder / "final")
    return log


def train_mode_trl(model, tok, cfg: RunConfig, mode: str, seed: int, progress: bool = False) -> list[dict]:
    """The same mode on ``PairRLGRPOTrainer`` (TRL): same world, rollouts, λ, threshold and lr."""
    from .trl_trainer import PairRLGRPOTrainer, pairrl_grpo_config

    folder = (
        Path(cfg.out) / f"seed{seed}" / mode
        if cfg.out
        else Path(tempfile.gettempdir()) / f"v1-infer-pairrl-{mode}-{seed}"
    )
    g = cfg.solver_rollouts * (2 if mode == "rl" else 1)
    opts = dict(
        output_dir=str(folder),
        per_device_train_batch_size=cfg.problems_per_step * g,
        max_completion_length=2,
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        temperature=cfg.temperature,
        top_k=0,
        logging_steps=1,
        save_strategy="steps" if cfg.save_every else "no",
        save_steps=cfg.save_every or 1,
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
    )
    opts.update(cfg.trl)
    args = pairrl_grpo_config(mode, cfg.solver_rollouts, **opts)
    trainer = PairRLGRPOTrainer(
        model,
        args,
        world.dataset(cfg.steps * cfg.problems_per_step, seed=seed),
        tok,
        task=world.trl_task(),
        mode=mode,
        judge_rollouts=cfg.judge_rollouts,
        lam=cfg.lam,
        threshold=cfg.threshold,
        rating_norm=cfg.rating_norm,
        judge_baseline=cfg.judge_baseline,
        seed=seed,
    )
    has_ckpt = any(folder.glob("checkpoint-*")) if folder.is_dir() else False
    trainer.train(resume_from_checkpoint=bool(cfg.resume and has_ckpt))
    log = [
        {"seed": seed, "mode": mode, **h} for h in trainer.state.log_history if "loss" in h or "reward" in h
    ]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.jsonl", "w") as f:
        for h in log:
            f.write(json.dumps(h, default=float) + "\n")
    save_model(trainer.model, tok, folder / "final")
    for h in log:  # common names with the torch backend
        h["gen_reward"] = h.get("rewards/solver_reward/mean", float("nan"))
        h["verif_reward"] = h.get("pairrl/verif_reward", float("nan"))
    return log


def _tail_mean(values) -> float | None:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else None


def run_study(cfg: RunConfig, progress: bool = False) -> tuple[list[dict], dict]:
    """Warm start once per seed, then RL in each mode from copies of it; one row per (seed, model) with
    Pass@1, pairwise verifier accuracy (ties count ½) and V1-Infer selection accuracy at ``budget``."""
    from paperworks_shared.models import byte_tokenizer

    tok = byte_tokenizer()
    rows, extras = [], {"logs": {}, "sft": {}}
    trainer = train_mode_torch if cfg.backend == "torch" else train_mode_trl
    for seed in cfg.seeds:
        model, sft_info = warm_start(cfg, seed, tok, progress)
        extras["sft"][seed] = sft_info
        ev = dict(n_problems=cfg.eval_problems, seed=10_000 + seed, budget=cfg.budget)
        rows.append({"seed": seed, "model": "warm start (SFT)", **evaluate(model, tok, **ev)})
        for mode in cfg.modes:
            m = copy.deepcopy(model)
            log = trainer(m, tok, cfg, mode, seed, progress)
            tail = log[-max(1, len(log) // 4) :] if log else []
            rows.append(
                {
                    "seed": seed,
                    "model": f"{mode} RL",
                    **evaluate(m.eval(), tok, **ev),
                    "train_gen_reward_last": _tail_mean(x["gen_reward"] for x in tail),
                    "train_verif_reward_last": _tail_mean(x["verif_reward"] for x in tail),
                }
            )
            extras["logs"][f"{mode}/seed{seed}"] = log
    return rows, extras


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± sd over seeds per model."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        row = {"model": name, "seeds": len(rs)}
        for k in ("pass@1", "verifier_acc", "v1_selection", "v1_selected_correct", "verifier_ties"):
            v = np.array([r[k] for r in rs], dtype=float)
            row[k] = float(np.nanmean(v))
            row[k + "_sd"] = float(np.nanstd(v)) if len(v) > 1 else 0.0
        out.append(row)
    return out


def plot_summary(summary: list[dict]):
    """Bars (mean ± sd over seeds) of Pass@1, pairwise verifier accuracy and V1-Infer pick accuracy."""
    from paperworks_shared.bench import new_figure

    fig, ax = new_figure(3, 1, size=(4.2, 3.4))
    names = [r["model"] for r in summary]
    panels = [
        ("pass@1", "Pass@1"),
        ("verifier_acc", "pairwise verifier acc"),
        ("v1_selected_correct", "V1-Infer pick correct"),
    ]
    for k, (key, title) in enumerate(panels):
        a = ax[0][k]
        a.bar(
            range(len(names)), [r[key] for r in summary], yerr=[r[key + "_sd"] for r in summary], color="C0"
        )
        a.set_xticks(range(len(names)))
        a.set_xticklabels([n.replace(" (SFT)", "").replace(" RL", "") for n in names], rotation=30)
        a.set_title(title)
        a.set_ylim(0, 1)
    return fig
