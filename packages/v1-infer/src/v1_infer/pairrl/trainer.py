"""Reference PairRL trainer for tiny models (plain torch, CPU): PairRL, PointRL and RL-only modes with
identical settings (paper §5, Table 1 loss settings; DESIGN.md §1.5 / §6.15 defaults).

Per step and problem: G solver rollouts graded exactly (generator reward 0/1, Dr.GRPO advantage
r − mean over the problem's group); in "pair" mode up to ``judge_rollouts`` C-I/C-C pairs from the same
step's rollouts are judged by the same model and rewarded with the thresholded pairwise reward; in
"point" mode single rollouts are judged pointwise; "rl" mode uses 2G solver rollouts and no judge.
Verifier advantage = reward − mean over the problem's judge rollouts. Loss = token-mean clipped loss
(clip 0.2/0.28) of the generator part + λ × that of the verifier part (separate token-means summed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from paperworks_shared.optim import warmup_cosine

from . import world
from .judging import judge_advantages
from .losses import token_mean_clipped_loss
from .pairing import make_verification_pairs
from .rewards import pair_verifier_reward, point_verifier_reward

MODES = ("pair", "point", "rl")


@dataclass(frozen=True)
class PairRLConfig:
    mode: str = "pair"
    solver_rollouts: int = 4
    judge_rollouts: int = 4
    problems_per_step: int = 16
    lam: float = 1.0
    lr: float = 3e-3
    clip_low: float = 0.2
    clip_high: float = 0.28
    temperature: float = 1.0
    threshold: float | None = 0.2
    rating_norm: str = "minus1_over9"
    judge_baseline: str = (
        "problem"  # r − mean over the problem's judge rollouts (DESIGN.md §6.15) | "step" (§1.5)
    )
    steps: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.judge_baseline not in ("problem", "step"):
            raise ValueError(f"judge_baseline must be 'problem' or 'step', got {self.judge_baseline!r}")
        if min(self.solver_rollouts, self.problems_per_step, self.steps) < 1 or self.judge_rollouts < 0:
            raise ValueError("solver_rollouts, problems_per_step and steps must be >= 1, judge_rollouts >= 0")


def _device(model) -> torch.device:
    """Where the model's weights live (the trainer builds its tensors there)."""
    return next(model.parameters()).device


def _encode(tok, texts):
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    return ids


@torch.no_grad()
def sample(model, tok, prompts: list[str], n_new: int, temperature: float, gen: torch.Generator) -> list[str]:
    """Sample ``n_new`` tokens per prompt (prompts of equal byte length are batched without padding)."""
    out = [""] * len(prompts)
    by_len: dict[int, list[int]] = {}
    enc = _encode(tok, prompts)
    for k, ids in enumerate(enc):
        by_len.setdefault(len(ids), []).append(k)
    dev = _device(model)
    for idx in by_len.values():
        x = torch.tensor([enc[k] for k in idx], device=dev)
        for _ in range(n_new):
            logits = model(input_ids=x).logits[:, -1, :256].float()  # bytes only
            if temperature > 0:  # sampled on the CPU with the CPU generator: same draws on any device
                probs = torch.softmax(logits / temperature, -1).cpu()
                nxt = torch.multinomial(probs, 1, generator=gen).to(dev)
            else:
                nxt = logits.argmax(-1, keepdim=True)
            x = torch.cat([x, nxt], 1)
        for r, k in enumerate(idx):
            out[k] = bytes(x[r, -n_new:].tolist()).decode("latin-1")
    return out


def completion_logp(
    model, tok, prompts: list[str], completions: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs [B, T] of ``completions`` given ``prompts`` and their mask (right-padded)."""
    enc = _encode(tok, prompts)
    comp = [list(c.encode("latin-1")) for c in completions]
    width = max(len(e) + len(c) for e, c in zip(enc, comp))
    T = max(len(c) for c in comp)
    dev = _device(model)
    x = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
    for r, (e, c) in enumerate(zip(enc, comp)):
        x[r, : len(e) + len(c)] = torch.tensor(e + c)
    logits = model(input_ids=x.to(dev)).logits[..., :256].float()
    logp_all = torch.log_softmax(logits, -1)
    lp = torch.zeros(len(enc), T, device=dev)
    mask = torch.zeros(len(enc), T, device=dev)
    for r, (e, c) in enumerate(zip(enc, comp)):
        for t, tokid in enumerate(c):
            lp[r, t] = logp_all[r, len(e) + t - 1, tokid]
            mask[r, t] = 1
    return lp, mask


def _pg_loss(model, tok, prompts, comps, adv, cfg):
    if not prompts:
        return torch.zeros((), device=_device(model))
    lp, mask = completion_logp(model, tok, prompts, comps)
    adv_t = torch.as_tensor(adv, dtype=torch.float32, device=lp.device)
    return token_mean_clipped_loss(
        lp, lp.detach(), adv_t, mask, cfg.clip_low, cfg.clip_high
    )  # one on-policy update per batch: ρ = 1


def sft(
    model,
    tok,
    examples: list[tuple[str, str]],
    steps: int,
    lr: float = 3e-3,
    batch: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Supervised warm start on (prompt, completion) pairs: next-byte loss on the completion bytes and
    the EOS only (the prompt digits are random, so a whole-line loss mostly measures them); returns the
    loss curve."""
    if not examples or isinstance(examples[0], str):
        raise ValueError("sft expects a non-empty list of (prompt, completion) pairs")
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    # cosine decay to 10% of lr (the shared schedule, no warm-up): the late, smaller steps consolidate
    # the judge circuit (same schedule as the former private LambdaLR up to float rounding).
    sched = warmup_cosine(opt, max(steps, 1), warmup_steps=0, floor=0.1)
    rng = np.random.default_rng(seed)
    dev = _device(model)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="sft", disable=not progress):
        chunk = [examples[int(k)] for k in rng.integers(0, len(examples), size=batch)]
        enc = _encode(tok, [p for p, _ in chunk])
        comp = [list(c.encode("latin-1")) + [tok.eos_token_id] for _, c in chunk]
        width = max(len(e) + len(c) for e, c in zip(enc, comp))
        x = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full_like(x, -100)
        for r, (e, c) in enumerate(zip(enc, comp)):
            x[r, : len(e) + len(c)] = torch.tensor(e + c)
            labels[r, len(e) : len(e) + len(c)] = torch.tensor(c)
        loss = model(input_ids=x.to(dev), labels=labels.to(dev)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train(
    model,
    tok,
    cfg: PairRLConfig,
    progress: bool = False,
    *,
    start_step: int = 0,
    optimizer_state: dict | None = None,
    callback=None,
) -> list[dict]:
    """Run RL steps ``start_step .. cfg.steps-1`` in ``cfg.mode``; returns per-step metrics.

    Every step draws its problems and samples from RNGs seeded by (seed, step), so a run resumed from a
    checkpoint (``start_step`` + the saved ``optimizer_state``) continues exactly as the uninterrupted
    one. ``callback(step, entry, optimizer)`` runs after each step (metrics logging, checkpoints)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    g = cfg.solver_rollouts * (2 if cfg.mode == "rl" else 1)
    log = []
    for step in tqdm(
        range(start_step, cfg.steps), desc=f"pairrl[{cfg.mode}]", disable=not progress, initial=start_step
    ):
        rng = np.random.default_rng([cfg.seed, step])
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        probs = world.make_problems(cfg.problems_per_step, rng)
        model.eval()
        s_prompts = [world.solver_prompt(p) for p in probs for _ in range(g)]
        s_out = sample(model, tok, s_prompts, 1, cfg.temperature, gen)
        s_rew = np.array(
            [float(o == world.answer(p)) for p, o in zip([p for p in probs for _ in range(g)], s_out)]
        )
        s_adv = (s_rew.reshape(len(probs), g) - s_rew.reshape(len(probs), g).mean(1, keepdims=True)).ravel()
        v_prompts, v_comps, v_grp, v_rew = [], [], [], []
        if cfg.mode != "rl":
            for k, p in enumerate(probs):
                outs = s_out[k * g : (k + 1) * g]
                ys = s_rew[k * g : (k + 1) * g].astype(bool)
                if cfg.mode == "pair":
                    pairs = make_verification_pairs(ys.tolist(), cfg.judge_rollouts, rng=rng)
                    prompts = [world.pair_prompt(p, outs[a], outs[b]) for a, b in pairs]
                    comps = sample(model, tok, prompts, 2, cfg.temperature, gen) if prompts else []
                    rew = [
                        pair_verifier_reward(
                            world.parse_digit_rating(c[:1]),
                            world.parse_digit_rating(c[1:2]),
                            ys[a],
                            ys[b],
                            threshold=cfg.threshold,
                            norm=cfg.rating_norm,
                        )
                        for c, (a, b) in zip(comps, pairs)
                    ]
                else:
                    idx: list[int] = rng.permutation(g)[: cfg.judge_rollouts].tolist() if ys.any() else []
                    prompts = [world.point_prompt(p, outs[i]) for i in idx]
                    comps = sample(model, tok, prompts, 1, cfg.temperature, gen) if prompts else []
                    rew = [
                        point_verifier_reward(
                            world.parse_digit_rating(c[:1]),
                            ys[i],
                            threshold=cfg.threshold,
                            norm=cfg.rating_norm,
                        )
                        for c, i in zip(comps, idx)
                    ]
                v_prompts += prompts
                v_comps += comps
                v_grp += [k] * len(rew)
                v_rew += rew
        v_adv = judge_advantages(v_rew, v_grp, cfg.judge_baseline)
        model.train()
        l_gen = _pg_loss(model, tok, s_prompts, s_out, s_adv, cfg)
        l_ver = _pg_loss(model, tok, v_prompts, v_comps, v_adv, cfg)
        loss = l_gen + cfg.lam * l_ver
        opt.zero_grad()
        if loss.requires_grad:
            loss.backward()
            opt.step()
        log.append(
            {
                "step": step,
                "gen_reward": float(s_rew.mean()),
                "verif_reward": float(np.mean(v_rew)) if v_rew else float("nan"),
                "loss": loss.item(),
                "judge_prompts": len(v_prompts),
            }
        )
        if callback is not None:
            callback(step, log[-1], opt)
    model.eval()
    return log


@torch.no_grad()
def evaluate(
    model, tok, n_problems: int = 100, n_cands: int = 8, seed: int = 123, budget: float = 1.0
) -> dict:
    """Pass@1 (sampled), pairwise verifier accuracy on C-I pairs, and V1-Infer selection accuracy on mixed
    problems with the model as its own pairwise judge (toy prompt format)."""
    from ..config import TournamentConfig
    from ..driver import V1Infer
    from ..types import Candidate, PairOutcome

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    probs = world.make_problems(n_problems, rng)
    outs = sample(model, tok, [world.solver_prompt(p) for p in probs for _ in range(n_cands)], 1, 1.0, gen)
    cands = [
        [
            Candidate(outs[k * n_cands + j], {"correct": outs[k * n_cands + j] == world.answer(p), "p": p})
            for j in range(n_cands)
        ]
        for k, p in enumerate(probs)
    ]
    pass1 = float(np.mean([c.meta["correct"] for cs in cands for c in cs]))

    class ToyJudge:
        def judge_pairs(self, queries):
            prompts = [world.pair_prompt(q.a.meta["p"], q.a.text, q.b.text) for q in queries]
            comps = sample(model, tok, prompts, 2, 0.0, gen)
            res = []
            for c in comps:
                ra, rb = world.parse_digit_rating(c[:1]), world.parse_digit_rating(c[1:2])
                res.append(PairOutcome(ra, rb, parsed=ra is not None and rb is not None, raw=c))
            return res

    mixed = [
        cs for cs in cands if any(c.meta["correct"] for c in cs) and not all(c.meta["correct"] for c in cs)
    ]
    sel = float("nan")
    if mixed:
        res = V1Infer(ToyJudge(), TournamentConfig(budget_multiplier=budget)).rank_many(
            ["toy"] * len(mixed), mixed
        )
        sel = float(np.mean([cs[r.best_index].meta["correct"] for cs, r in zip(mixed, res)]))
    # over ALL problems (all-correct sets count 1, all-wrong 0): comparable across models whose mixed sets differ
    n_all = sum(all(c.meta["correct"] for c in cs) for cs in cands)
    sel_all = (n_all + (sel * len(mixed) if mixed else 0.0)) / len(cands)
    # pairwise verifier accuracy on one C-I pair per problem (slot randomised)
    correct_pairs, ties, parsed = [], [], []
    for p in probs[:n_problems]:
        ans = world.answer(p)
        wrong = world.wrong_answer(p, rng)
        flip = rng.random() < 0.5
        xa, xb = (wrong, ans) if flip else (ans, wrong)
        c = sample(model, tok, [world.pair_prompt(p, xa, xb)], 2, 0.0, gen)[0]
        ra, rb = world.parse_digit_rating(c[:1]), world.parse_digit_rating(c[1:2])
        if ra is None or rb is None:
            correct_pairs.append(0.0)  # unparsed: wrong
        elif ra == rb:
            correct_pairs.append(0.5)  # a tie is a coin flip for the selector, not a hit
        else:
            correct_pairs.append(float((rb > ra) if flip else (ra > rb)))
        ties.append(ra is not None and ra == rb)
        parsed.append(ra is not None and rb is not None)
    return {
        "pass@1": pass1,
        "verifier_acc": float(np.mean(correct_pairs)),
        "verifier_ties": float(np.mean(ties)),
        "verifier_parsed": float(np.mean(parsed)),
        "v1_selection": sel,
        "v1_selected_correct": float(sel_all),
        "mixed_problems": len(mixed),
    }
