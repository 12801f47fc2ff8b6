from .base import TextEnv
from .rollout import EpisodeResult, Policy, rollout
from .scoring import EVAL_SEED, Score, TaskAnchors, mean_ci, score_episodes

__all__ = [
    "EVAL_SEED",
    "EpisodeResult",
    "Policy",
    "Score",
    "TaskAnchors",
    "TextEnv",
    "mean_ci",
    "rollout",
    "score_episodes",
]
