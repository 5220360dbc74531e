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
from typing import Any

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


def _warm_start_key(cfg: RunConfig, seed: int) -> dict:
    return {
        "what": "v1-infer pairrl warm start",
        # v3: built through paperworks_shared.cache.get_or_build (private staging, atomic publish);
        # v4: SFT schedule from paperworks_shared.optim (equal up to float rounding, not bit-identical)
        "v": 4,
        "world": [world.MOD, world.pair_prompt((1, 2), "3", "4"), world.point_prompt((1, 2), "3")],
        "seed": seed,
        "model": cfg.model,
        **{
            k: getattr(cfg, k)
            for k in ("sft_steps", "sft_lr", "seen_frac", "sft_solve_rate", "sft_judge_acc")
        },
    }


def _train_warm_start(cfg: RunConfig, seed: int, tok, progress: bool, device=None):
    from paperworks_shared.models import tiny_causal_lm

    torch.manual_seed(seed)
    model = tiny_causal_lm("llama", seed=seed, **cfg.model)
    if device is not None:
        model = model.to(device)
    ex = world.sft_examples(
        4000,
        np.random.default_rng(seed),
        solve_rate=cfg.sft_solve_rate,
        judge_acc=cfg.sft_judge_acc,
        seen_frac=cfg.seen_frac,
    )
    curve = sft(model, tok, ex, cfg.sft_steps, lr=cfg.sft_lr, seed=seed, progress=progress)
    info = {"sft_loss_first": float(np.mean(curve[:10])), "sft_loss_last": float(np.mean(curve[-10:]))}
    return model, info


def _save_model_dir(model, tok, folder: Path, files: dict | None = None) -> Path:
    """Model + tokenizer (+ small JSON files) built in a private staging folder, renamed into place."""
    from paperworks_shared.files import publish_dir, strict_json

    def build(staging: Path) -> None:
        save_model(model, tok, staging)
        for name, obj in (files or {}).items():
            (staging / name).write_text(strict_json(obj) + "\n")

    return publish_dir(build, folder)


def _read_metrics(folder: Path) -> dict:
    p = folder / "metrics.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def warm_start(cfg: RunConfig, seed: int, tok, progress: bool = False, device=None):
    """SFT warm start: from the shared cache (``cache_warm_start``, built once through
    `paperworks_shared.cache.get_or_build`), from ``out/seed<S>/warm_start`` on ``resume``, or trained;
    returned on ``device`` (default CPU)."""
    model, info = _warm_start(cfg, seed, tok, progress, device)
    return (model.to(device) if device is not None else model), info


def _warm_start(cfg: RunConfig, seed: int, tok, progress: bool, device):
    from paperworks_shared.cache import get_or_build

    if cfg.cache_warm_start:
        built = {}

        def build(staging: Path) -> None:
            model, info = _train_warm_start(cfg, seed, tok, progress, device)
            save_model(model, tok, staging)
            (staging / "metrics.json").write_text(json.dumps(info, indent=1))
            built["model"], built["info"] = model, info

        path, was_cached = get_or_build("v1-infer-pairrl", _warm_start_key(cfg, seed), build)
        if not was_cached:
            return built["model"], {**built["info"], "cached": False}
        return _load_model_checked(path), {**_read_metrics(path), "cached": True}
    folder = Path(cfg.out) / f"seed{seed}" / "warm_start" if cfg.out else None
    if folder is not None and cfg.resume and (folder / "config.json").is_file():
        info = _read_metrics(folder)
        return _load_model_checked(folder), {
            "sft_loss_first": info.get("sft_loss_first"),  # None: not recorded by an older run
            "sft_loss_last": info.get("sft_loss_last"),
            "cached": True,
        }
    model, info = _train_warm_start(cfg, seed, tok, progress, device)
    if folder is not None:
        _save_model_dir(model, tok, folder, {"metrics.json": info})
    return model, info


def _load_model_checked(folder: Path):
    try:
        return load_model(folder)[0]
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the saved model in {folder}: {e}") from None


TRAINER_STATE_KIND = "v1-infer-pairrl-trainer-state"


def _load_trainer_state(path: Path) -> dict:
    """``trainer_state.pt`` (step + optimizer state dict) in the shared checkpoint format
    (`paperworks_shared.checkpoint`, read with ``weights_only=True``: a crafted pickle in a user's --out
    folder cannot run code). A bare ``{"step", "optimizer"}`` dict written by older versions is still read."""
    from paperworks_shared.checkpoint import CheckpointError, load_checkpoint

    try:
        state, _ = load_checkpoint(path, kind=TRAINER_STATE_KIND)
    except CheckpointError as e:
        if "not a paperworks checkpoint" not in str(e):
            raise ValueError(f"cannot load checkpoint state {e}") from None
        try:  # the pre-shared-format file: a plain dict, still weights_only
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as e2:  # noqa: BLE001 - corrupt / unsafe file: one clear error naming it
            raise ValueError(f"cannot load checkpoint state {path}: {type(e2).__name__}: {e2}") from None
    if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
        raise ValueError(f"{path} is not a v1-infer trainer state (needs 'step' and 'optimizer')")
    return state


def save_checkpoint(model, tok, opt, step: int, folder: Path) -> Path:
    """``folder`` = model + tokenizer + ``trainer_state.pt`` (weights_only-safe), published atomically."""
    from paperworks_shared.checkpoint import save_checkpoint as save_state
    from paperworks_shared.files import publish_dir

    def build(staging: Path) -> None:
        save_model(model, tok, staging)
        save_state(
            staging / "trainer_state.pt",
            {"step": int(step), "optimizer": opt.state_dict()},
            kind=TRAINER_STATE_KIND,
        )

    return publish_dir(build, folder)


def train_mode_torch(model, tok, cfg: RunConfig, mode: str, seed: int, progress: bool = False) -> list[dict]:
    """Reference trainer with jsonl metrics, checkpoints every ``save_every`` steps and resume."""
    from paperworks_shared.files import append_jsonl

    pc = cfg.pairrl(mode, seed)
    folder = Path(cfg.out) / f"seed{seed}" / mode if cfg.out else None
    start, opt_state = 0, None
    if folder is not None and cfg.resume:
        last = _latest_step(folder)
        if last is not None:
            state = _load_trainer_state(last / "trainer_state.pt")
            model.load_state_dict(_load_model_checked(last).state_dict())
            start, opt_state = int(state["step"]) + 1, state["optimizer"]
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        if not start and (folder / "metrics.jsonl").exists():
            (folder / "metrics.jsonl").unlink()

    def callback(step, entry, opt):
        if folder:
            append_jsonl(folder / "metrics.jsonl", _finite({"seed": seed, "mode": mode, **entry}))
        if folder and cfg.save_every and (step + 1) % cfg.save_every == 0:
            save_checkpoint(model, tok, opt, step, folder / f"step-{step + 1}")

    log = train(
        model, tok, pc, progress=progress, start_step=start, optimizer_state=opt_state, callback=callback
    )
    if folder:
        _save_model_dir(model, tok, folder / "final")
    return log


def _finite(obj):
    """NaN / inf -> None (JSON null) recursively: records stay strict JSON."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, (np.floating,)):
        return _finite(float(obj))
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


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
    from paperworks_shared.files import atomic_write_text, strict_json

    folder.mkdir(parents=True, exist_ok=True)
    for h in log:  # common names with the torch backend; None where the mode has no such reward
        # (RL-only has no verifier objective, so its verif_reward is undefined: null, not NaN)
        h["gen_reward"] = h.get("rewards/solver_reward/mean")
        h["verif_reward"] = h.get("pairrl/verif_reward")
    text = "".join(strict_json(_finite(h), indent=None, default=float) + "\n" for h in log)
    atomic_write_text(folder / "metrics.jsonl", text)
    _save_model_dir(trainer.model, tok, folder / "final")
    return log


def _tail_mean(values) -> float | None:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else None


def run_study(cfg: RunConfig, progress: bool = False, device=None) -> tuple[list[dict], dict]:
    """Warm start once per seed, then RL in each mode from copies of it; one row per (seed, model) with
    Pass@1, pairwise verifier accuracy (ties count ½) and V1-Infer selection accuracy at ``budget``.
    ``device`` (torch backend) is where the models train and are evaluated (default: CPU)."""
    from paperworks_shared.models import byte_tokenizer

    tok = byte_tokenizer()
    rows: list[dict] = []
    extras: dict[str, dict] = {"logs": {}, "sft": {}}
    trainer = train_mode_torch if cfg.backend == "torch" else train_mode_trl
    for seed in cfg.seeds:
        model, sft_info = warm_start(cfg, seed, tok, progress, device=device)
        extras["sft"][seed] = sft_info
        ev: dict[str, Any] = dict(n_problems=cfg.eval_problems, seed=10_000 + seed, budget=cfg.budget)
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


VAL_SEED = 20_000  # validation problems: seed VAL_SEED + s; test problems: 10_000 + s (disjoint streams)
TEST_SEED = 10_000
SELECT_METRIC = "v1_selected_correct"


def run_tuned_study(
    cfg: RunConfig,
    lrs: tuple[float, ...],
    *,
    eval_every: int,
    val_problems: int,
    progress: bool = False,
    device=None,
) -> tuple[list[dict], dict]:
    """The fair version of `run_study` (issue 19.1): every mode gets the same RL learning-rate grid
    ``lrs`` and the same ``cfg.steps`` budget. Each run is scored on *validation* problems (seed
    ``VAL_SEED + s``) at step 0 (the warm start) and every ``eval_every`` steps; the (lr, step) with the best
    validation ``v1_selected_correct`` is kept (ties: earlier step, then the grid's order) and only that
    model is scored on the *test* problems (seed ``TEST_SEED + s``). Returns one test row per (seed, model)
    (with ``lr``, ``best_step``, ``val_score``) and extras with the per-mode best steps and the grid."""
    if cfg.backend != "torch":
        raise ValueError("run_tuned_study needs the torch backend (it evaluates checkpoints mid-run)")
    if not lrs or any(not (lr > 0) for lr in lrs):
        raise ValueError(f"lrs must be a non-empty grid of positive learning rates, got {lrs}")
    if eval_every < 1 or eval_every > cfg.steps:
        raise ValueError(f"eval_every must be in [1, steps={cfg.steps}], got {eval_every}")
    from paperworks_shared.models import byte_tokenizer

    tok = byte_tokenizer()
    rows: list[dict] = []
    extras: dict[str, Any] = {
        "best_steps": {m: [] for m in cfg.modes},
        "chosen_lr": {m: [] for m in cfg.modes},
    }
    extras |= {"sft": {}, "val_curves": {}, "grid": {"lr": list(lrs)}, "eval_every": eval_every}
    for seed in cfg.seeds:
        base, sft_info = warm_start(cfg, seed, tok, progress, device=device)
        base.eval()
        extras["sft"][seed] = sft_info
        val: dict[str, Any] = dict(n_problems=val_problems, seed=VAL_SEED + seed, budget=cfg.budget)
        test: dict[str, Any] = dict(n_problems=cfg.eval_problems, seed=TEST_SEED + seed, budget=cfg.budget)
        v0 = float(evaluate(base, tok, **val)[SELECT_METRIC])
        rows.append(
            {
                "seed": seed,
                "model": "warm start (SFT)",
                "lr": None,
                "best_step": 0,
                "val_score": v0,
                **evaluate(base, tok, **test),
            }
        )
        for mode in cfg.modes:
            best = (v0, 0, 0, copy.deepcopy(base.state_dict()))  # (score, step, grid index, weights)
            for k, lr in enumerate(lrs):
                m = copy.deepcopy(base)
                curve = [(0, v0)]

                def on_step(step, entry, opt, m=m, k=k, curve=curve, val=val):
                    nonlocal best
                    if (step + 1) % eval_every:
                        return
                    score = float(evaluate(m.eval(), tok, **val)[SELECT_METRIC])
                    curve.append((step + 1, score))
                    if score > best[0]:  # strictly better: ties keep the earlier step / grid entry
                        best = (score, step + 1, k, copy.deepcopy(m.state_dict()))

                pc = dataclasses.replace(cfg.pairrl(mode, seed), lr=lr)
                train(m, tok, pc, progress=progress, callback=on_step)
                extras["val_curves"][f"{mode}/seed{seed}/lr{lr:g}"] = curve
            score, step, k, weights = best
            chosen = copy.deepcopy(base)
            chosen.load_state_dict(weights)
            chosen.eval()
            extras["best_steps"][mode].append(step)
            extras["chosen_lr"][mode].append(lrs[k] if step else None)
            rows.append(
                {
                    "seed": seed,
                    "model": f"{mode} RL",
                    "lr": lrs[k] if step else None,
                    "best_step": step,
                    "val_score": score,
                    **evaluate(chosen, tok, **test),
                }
            )
    return rows, extras


NULLS_NOTE = (
    "null = undefined, never measured as a number: verif_reward / train_verif_reward_last of the 'rl' "
    "mode (RL-only has no verifier objective), and SFT losses of a warm start resumed from a folder "
    "that did not record them"
)


def study_record(cfg: RunConfig, rows: list[dict], extra: dict, experiment: str = "pairrl_study"):
    """The ``--json`` output as a `paperworks_shared.bench.Record` (commit, machine, time; strict JSON:
    undefined values are null, ``metrics["nulls"]`` says why)."""
    import re

    from paperworks_shared.bench import Record

    name = re.sub(r"[^A-Za-z0-9_-]", "_", experiment) or "pairrl_study"
    return Record(
        package="v1-infer",
        experiment=name,
        scale="gpu" if torch.cuda.is_available() else "cpu",
        rows=_finite(rows),
        metrics=_finite(
            {"summary": summarize(rows), "sft": extra.get("sft", {}), "logs": extra.get("logs", {})}
        )
        | {"nulls": NULLS_NOTE},
        params=_finite(dataclasses.asdict(cfg)),
        claim="PairRL vs PointRL vs RL-only on the small offline world (v1-infer pairrl)",
    )


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
