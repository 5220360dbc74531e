"""V1-PairRL (issue 9): rewards, pair construction, DAPO-style loss, judge-side helpers; trainers in
``pairrl.trainer`` (plain torch) and ``pairrl.trl_trainer`` (TRL, extra ``v1-infer[pairrl]``)."""

from .judging import PairRLTask, build_judge_jobs, judge_advantages, judge_rewards, loss_scales
from .losses import group_advantages, token_mean_clipped_loss
from .pairing import make_verification_pairs
from .rewards import format_ok, gen_reward, normalize_rating, pair_verifier_reward, point_verifier_reward

__all__ = [
    "PairRLTask",
    "build_judge_jobs",
    "judge_advantages",
    "judge_rewards",
    "loss_scales",
    "format_ok",
    "gen_reward",
    "group_advantages",
    "make_verification_pairs",
    "normalize_rating",
    "pair_verifier_reward",
    "point_verifier_reward",
    "token_mean_clipped_loss",
]

# trainers, the runner and the toy world are imported on demand: `from v1_infer.pairrl.trainer import ...`
