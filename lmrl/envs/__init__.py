from .base import TextEnv
from .reference import ReferencePolicy
from .rollout import EpisodeResult, Policy, rollout
from .scoring import (
    EVAL_SEED,
    Score,
    TaskAnchors,
    format_normalized,
    mean_ci,
    paired_difference,
    score_episodes,
    t_interval,
    t_quantile,
)

__all__ = [
    "EVAL_SEED",
    "EpisodeResult",
    "Policy",
    "ReferencePolicy",
    "Score",
    "TaskAnchors",
    "TextEnv",
    "format_normalized",
    "mean_ci",
    "paired_difference",
    "rollout",
    "score_episodes",
    "t_interval",
    "t_quantile",
]
