"""The small-world study: one warm-started tiny model, then RL in each mode with identical settings."""

from __future__ import annotations

import copy

import numpy as np
import torch

from . import world
from .trainer import PairRLConfig, evaluate, sft, train


def run_small_world(
    sft_steps: int = 400,
    rl_steps: int = 40,
    eval_problems: int = 80,
    seed: int = 0,
    modes=("pair", "point", "rl"),
    progress: bool = False,
) -> tuple[list[dict], dict]:
    """Returns (rows, extras): one row per model (the warm start and each RL mode) with Pass@1, pairwise
    verifier accuracy and V1-Infer 1x selection accuracy, plus mean rewards over the last steps."""
    from paperworks_shared.models import byte_tokenizer, tiny_causal_lm

    torch.manual_seed(seed)
    tok = byte_tokenizer()
    model = tiny_causal_lm("llama", seed=seed)
    curve = sft(
        model,
        tok,
        world.sft_examples(4000, np.random.default_rng(seed)),
        sft_steps,
        seed=seed,
        progress=progress,
    )
    rows = [{"model": "warm start (SFT)", **evaluate(model, tok, eval_problems, seed=seed + 1)}]
    logs = {}
    for mode in modes:
        m = copy.deepcopy(model)
        log = train(m, tok, PairRLConfig(mode=mode, steps=rl_steps, seed=seed), progress=progress)
        tail = log[-max(1, rl_steps // 4) :]
        rows.append(
            {
                "model": f"{mode} RL",
                **evaluate(m, tok, eval_problems, seed=seed + 1),
                "train_gen_reward_last": float(np.mean([x["gen_reward"] for x in tail])),
                "train_verif_reward_last": float(np.nanmean([x["verif_reward"] for x in tail]))
                if mode != "rl"
                else float("nan"),
            }
        )
        logs[mode] = log
    return rows, {
        "sft_loss_first": float(np.mean(curve[:10])),
        "sft_loss_last": float(np.mean(curve[-10:])),
        "logs": logs,
    }
