"""V1-PairRL building blocks (issue 9, partial): rewards, pair construction, DAPO-style loss."""

from .losses import group_advantages, token_mean_clipped_loss
from .pairing import make_verification_pairs
from .rewards import format_ok, gen_reward, normalize_rating, pair_verifier_reward, point_verifier_reward

__all__ = [
    "format_ok",
    "gen_reward",
    "group_advantages",
    "make_verification_pairs",
    "normalize_rating",
    "pair_verifier_reward",
    "point_verifier_reward",
    "token_mean_clipped_loss",
]

# the torch trainer and the toy world are imported on demand: `from v1_infer.pairrl.trainer import ...`
