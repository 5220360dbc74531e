"""PairRL on TRL (issue 9 deliverable 3): a ``GRPOTrainer`` whose rollout step also trains the judge.

Per generation batch (DESIGN.md §1.5):
1. TRL generates the G solver completions per prompt (vLLM when ``use_vllm=True``, else transformers) and
   scores them with the generator reward (grader 0/1, optional format gate); with ``scale_rewards="none"``
   TRL's advantage is the Dr.GRPO ``r − group mean``.
2. From THAT step's solver completions this class builds the judge prompts: in "pair" mode up to
   ``judge_rollouts`` C-I / C-C pairs per problem (``make_verification_pairs``, never I-I); in "point"
   mode up to ``judge_rollouts`` single rollouts per problem that has a correct one; none in "rl" mode.
3. The same model generates one judge completion per prompt through TRL's own generation path (so vLLM
   colocate/server is used when configured), the thresholded pairwise / pointwise reward scores it, and
   the judge advantage is ``r − mean`` over the step's judge prompts (``judge_baseline="step"``, DESIGN.md §1.5) or
   over the problem's judge prompts (``"problem"``, the DESIGN.md §6.15 default of the reference trainer).
4. Solver and judge rows are concatenated into one batch for TRL's loss with per-token advantages scaled
   so that TRL's ``loss_type="dapo"`` (Σ loss·mask / global token count = verl's token-mean) computes
   ``token-mean(gen) + λ·token-mean(judge)`` exactly (``pooling="separate"``, DESIGN.md §6.15 default), or one pooled
   token-mean with the judge advantages multiplied by λ (``pooling="pooled"``).

Settings the notes require (clip 0.2 / 0.28, no KL, no std-normalisation, token-mean) are what
``pairrl_grpo_config`` returns and what the trainer checks at construction. Scaling: everything is TRL's
``GRPOConfig`` / accelerate, so ``accelerate launch`` (DDP, DeepSpeed, FSDP) works unchanged; judge prompts
are built from the solver completions gathered over all processes with the same seeded RNG on every
rank, then split evenly (padded with zero-weight rows) so every rank runs the same number of rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

try:
    from accelerate.utils import gather, gather_object
    from trl import GRPOConfig, GRPOTrainer
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "v1_infer.pairrl.trl_trainer needs TRL and accelerate: pip install 'v1-infer[pairrl]'"
    ) from e

from .judging import (
    JudgeJob,
    PairRLTask,
    build_judge_jobs,
    judge_advantages,
    judge_rewards,
    loss_scales,
)
from .rewards import gen_reward

__all__ = [
    "JudgeJob",
    "PairRLGRPOTrainer",
    "PairRLTask",
    "build_judge_jobs",
    "judge_advantages",
    "judge_rewards",
    "loss_scales",
    "pairrl_grpo_config",
]

MODES = ("pair", "point", "rl")
TOKEN_MEAN_LOSS = "dapo"  # TRL: Σ per-token loss · mask / (global number of completion tokens)


def pairrl_grpo_config(mode: str = "pair", solver_rollouts: int = 4, **overrides) -> GRPOConfig:
    """A ``GRPOConfig`` with the paper's DAPO settings (Table 1): ε = 0.2 / 0.28, β = 0 (no KL), no
    std-normalisation, token-mean loss, no entropy bonus; ``num_generations`` = G (2G in "rl" mode, equal
    rollout budget 4+4 vs 8). ``overrides`` are passed to ``GRPOConfig`` (output_dir, lr, batch size...)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    kw: dict[str, Any] = dict(
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        scale_rewards="none",
        loss_type=TOKEN_MEAN_LOSS,
        num_generations=solver_rollouts * (2 if mode == "rl" else 1),
        report_to=[],
    )
    kw.update(overrides)
    return GRPOConfig(**kw)


def _pad_rows(rows: list[torch.Tensor], value, side: str, width: int | None = None) -> torch.Tensor:
    width = max([width or 0] + [len(r) for r in rows])
    out = torch.full((len(rows), width), value, dtype=rows[0].dtype if rows else torch.long)
    for i, r in enumerate(rows):
        if len(r):
            if side == "left":
                out[i, width - len(r) :] = r
            else:
                out[i, : len(r)] = r
    return out


def _repad(t: torch.Tensor, width: int, value, side: str) -> torch.Tensor:
    extra = width - t.size(1)
    if extra <= 0:
        return t
    fill = torch.full((t.size(0), extra), value, dtype=t.dtype, device=t.device)
    return torch.cat([fill, t] if side == "left" else [t, fill], 1)


class PairRLGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` for PairRL / PointRL / RL-only (see the module docstring for the step).

    Extra arguments: ``task`` (``PairRLTask``), ``mode``, ``judge_rollouts`` (per problem), ``lam`` (λ),
    ``threshold`` / ``rating_norm`` (verifier reward, DESIGN.md §6.14), ``judge_baseline`` ("step" |
    "problem"), ``pooling`` ("separate" | "pooled"), ``seed`` (pair sampling). The generator reward is
    installed as the only ``reward_funcs`` entry. ``last_pairrl_step`` keeps the latest step's solver
    completions, labels, judge prompts / completions / rewards / advantages for inspection and logging.
    """

    def __init__(
        self,
        model,
        args: GRPOConfig,
        train_dataset,
        processing_class=None,
        *,
        task: PairRLTask,
        mode: str = "pair",
        judge_rollouts: int = 4,
        lam: float = 1.0,
        threshold: float | None = 0.2,
        rating_norm: str = "minus1_over9",
        judge_baseline: str = "step",
        pooling: str = "separate",
        seed: int = 0,
        **kwargs,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if judge_rollouts < 0 or lam < 0:
            raise ValueError(f"judge_rollouts ({judge_rollouts}) and lam ({lam}) must be >= 0")
        if judge_baseline not in ("step", "problem") or pooling not in ("separate", "pooled"):
            raise ValueError(f"judge_baseline={judge_baseline!r} / pooling={pooling!r} not supported")
        if args.loss_type != TOKEN_MEAN_LOSS:
            raise ValueError(
                f"loss_type={args.loss_type!r}: PairRL needs token-mean aggregation; in TRL that is "
                f"loss_type='{TOKEN_MEAN_LOSS}' (Σ loss·mask / global token count)"
            )
        if args.scale_rewards != "none":
            raise ValueError("scale_rewards must be 'none' (Dr.GRPO advantage r − group mean, no std)")
        if args.beta != 0.0:
            raise ValueError(f"beta={args.beta}: the paper trains without a KL term (β = 0)")
        self.task, self.pairrl_mode, self.judge_rollouts, self.lam = task, mode, judge_rollouts, lam
        self.threshold, self.rating_norm = threshold, rating_norm
        self.judge_baseline, self.pooling = judge_baseline, pooling
        self._pairrl_rng = np.random.default_rng(seed)
        self.last_pairrl_step: dict = {}

        def solver_reward(prompts, completions, **kw):
            n = len(completions)
            cols = {k: v for k, v in kw.items() if isinstance(v, list) and len(v) == n}
            rows = [{k: v[i] for k, v in cols.items()} | {"prompt": prompts[i]} for i in range(n)]
            return [
                gen_reward(task.is_correct(r, _text(c)), _text(c), require_format=task.require_format)
                for r, c in zip(rows, completions)
            ]

        super().__init__(
            model=model,
            reward_funcs=[solver_reward],
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            **kwargs,
        )

    # -- judge generation (overridable, e.g. mocked in tests) -------------------------------------------
    def _generate_judge(self, prompts: list) -> tuple[list[list[int]], list[list[int]], list | None]:
        """One completion per judge prompt with the same model through TRL's generation path (vLLM when
        configured). Returns (prompt_ids, completion_ids, sampling logprobs or None)."""
        prompt_ids, _, _ = self._tokenize_prompts(prompts)
        completion_ids, logprobs = self._generate_single_turn(prompt_ids, None, {}, num_generations=1)
        return [list(p) for p in prompt_ids], [list(c) for c in completion_ids], logprobs

    def _decode(self, ids) -> str:
        proc = self.processing_class
        decode = getattr(proc, "decode", None)
        if decode is None:  # GRPOTrainer types it as any processor; PairRL needs a tokenizer
            raise TypeError(f"PairRL needs a tokenizer as processing_class, got {type(proc).__name__}")
        return str(decode(ids, skip_special_tokens=True))

    # -- the PairRL rollout step ------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.pairrl_mode == "rl" or not self.model.training:
            return out  # RL-only (8 solver rollouts) and evaluation: TRL's batch as is
        if any(k in out for k in ("pixel_values", "tool_mask")):
            raise ValueError("PairRLGRPOTrainer supports text-only, tool-free rollouts")
        acc, device = self.accelerator, out["completion_ids"].device
        cmask = out["completion_mask"]
        texts = [self._decode(ids[m.bool()].tolist()) for ids, m in zip(out["completion_ids"], cmask)]
        correct = [bool(self.task.is_correct(row, t)) for row, t in zip(inputs, texts)]
        # the global step: groups of num_generations consecutive rows may span ranks (TRL's layout)
        everything = gather_object(list(zip(inputs, texts, correct)))
        G = self.num_generations
        groups = [everything[i : i + G] for i in range(0, len(everything), G)]
        jobs = build_judge_jobs(groups, self.pairrl_mode, self.task, self.judge_rollouts, self._pairrl_rng)
        n_ranks, rank = acc.num_processes, acc.process_index
        B, spg = len(inputs), self.args.steps_per_generation
        per_rank = math.ceil(len(jobs) / n_ranks) if jobs else 0
        while per_rank and (B + per_rank) % spg:
            per_rank += 1  # TRL splits the batch into steps_per_generation equal chunks
        mine = list(range(rank * per_rank, (rank + 1) * per_rank))
        real = [i < len(jobs) for i in mine]
        local_jobs = [jobs[i] if ok else (jobs[0] if jobs else None) for i, ok in zip(mine, real)]
        if per_rank:
            p_ids, c_ids, j_logps = self._generate_judge([j.prompt for j in local_jobs])
            j_texts = [self._decode(c) for c in c_ids]
            j_rew = judge_rewards(local_jobs, j_texts, self.task, self.threshold, self.rating_norm)
        else:
            p_ids, c_ids, j_logps, j_texts, j_rew = [], [], None, [], []
        # baselines over the real judge rows of the whole step
        all_rew = gather_object([r for r, ok in zip(j_rew, real) if ok])
        all_grp = [j.group for j in jobs]
        all_adv = judge_advantages(all_rew, all_grp, self.judge_baseline)
        j_adv = [all_adv[i] if ok else 0.0 for i, ok in zip(mine, real)]
        j_mask = [torch.ones(len(c), dtype=torch.long) * int(ok) for c, ok in zip(c_ids, real)]
        n_gen = gather(cmask.sum().float()).sum().item()
        n_judge = gather(torch.tensor(float(sum(int(m.sum()) for m in j_mask)), device=device)).sum().item()
        s_gen, s_judge = loss_scales(n_gen, n_judge, self.lam, self.pooling)
        mode = "train"
        self._metrics[mode]["pairrl/judge_prompts"].append(float(len(jobs)))
        if all_rew:
            self._metrics[mode]["pairrl/verif_reward"].append(float(np.mean(all_rew)))
        self.last_pairrl_step = {
            "solver_texts": texts,
            "correct": correct,
            "jobs": jobs,
            "judge_prompts": [j.prompt for j, ok in zip(local_jobs, real) if ok],
            "judge_texts": [t for t, ok in zip(j_texts, real) if ok],
            "judge_rewards": all_rew,
            "judge_advantages": all_adv,
            "scales": (s_gen, s_judge),
            "tokens": (n_gen, n_judge),
        }
        if not per_rank:
            out["advantages"] = out["advantages"] * s_gen
            return out
        return self._concat(out, p_ids, c_ids, j_mask, j_adv, j_logps, s_gen, s_judge)

    def _concat(self, out, p_ids, c_ids, j_mask, j_adv, j_logps, s_gen, s_judge):
        """Append the judge rows to TRL's solver batch (left-padded prompts, right-padded completions,
        per-token advantages)."""
        device, pad_id = out["completion_ids"].device, self.processing_class.pad_token_id
        jp = _pad_rows([torch.tensor(p, dtype=torch.long) for p in p_ids], pad_id, "left").to(device)
        jpm = _pad_rows([torch.ones(len(p), dtype=torch.long) for p in p_ids], 0, "left").to(device)
        jc = _pad_rows([torch.tensor(c, dtype=torch.long) for c in c_ids], pad_id, "right").to(device)
        jcm = _pad_rows(j_mask, 0, "right").to(device)
        P = max(out["prompt_ids"].size(1), jp.size(1))
        T = max(out["completion_ids"].size(1), jc.size(1), 1)
        new = dict(out)
        new["prompt_ids"] = torch.cat(
            [_repad(out["prompt_ids"], P, pad_id, "left"), _repad(jp, P, pad_id, "left")]
        )
        new["prompt_mask"] = torch.cat([_repad(out["prompt_mask"], P, 0, "left"), _repad(jpm, P, 0, "left")])
        new["completion_ids"] = torch.cat(
            [_repad(out["completion_ids"], T, pad_id, "right"), _repad(jc, T, pad_id, "right")]
        )
        new["completion_mask"] = torch.cat(
            [_repad(out["completion_mask"], T, 0, "right"), _repad(jcm, T, 0, "right")]
        )
        B, J = out["completion_ids"].size(0), jc.size(0)
        gen_adv = (out["advantages"].float() * s_gen)[:, None].expand(B, T)
        jud_adv = (torch.tensor(j_adv, dtype=torch.float32, device=device) * s_judge)[:, None].expand(J, T)
        new["advantages"] = torch.cat([gen_adv, jud_adv])  # [B+J, T]: TRL accepts per-token advantages
        new["num_items_in_batch"] = self.accelerator.gather(new["completion_mask"].sum()).sum()
        ids = torch.cat([new["prompt_ids"], new["completion_ids"]], 1)
        att = torch.cat([new["prompt_mask"], new["completion_mask"]], 1)
        if "old_per_token_logps" in out:  # off-policy reuse (num_iterations > 1 or spg > accumulation)
            with torch.no_grad():
                lp, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids[B:], att[B:], T, batch_size=self.args.per_device_train_batch_size
                )
            new["old_per_token_logps"] = torch.cat([_repad(out["old_per_token_logps"], T, 0.0, "right"), lp])
        if "sampling_per_token_logps" in out:  # vLLM sampler log-probs
            rows = [torch.tensor([float("nan") if x is None else x for x in r]) for r in (j_logps or [])]
            js = _pad_rows(rows, 0.0, "right", T).to(device) if rows else new["old_per_token_logps"][B:]
            new["sampling_per_token_logps"] = torch.cat(
                [_repad(out["sampling_per_token_logps"], T, 0.0, "right"), js[:, :T]]
            )
        if "importance_sampling_ratio" in out:  # no vLLM IS correction on the judge rows (ratio 1)
            isr = out["importance_sampling_ratio"]
            w = isr.size(1) if isr.size(1) == 1 else T
            new["importance_sampling_ratio"] = torch.cat(
                [_repad(isr, w, 1.0, "right"), torch.ones(J, w, device=device, dtype=isr.dtype)]
            )
        return new


def _text(c) -> str:
    """A completion as text (conversational completions are lists of messages)."""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict):
        return str(c[-1].get("content", ""))
    return str(c)
