from .base import TextEnv
from .policies import GeneratePolicy
from .rollout import EpisodeResult, Policy, rollout
from .scoring import Score, TaskAnchors, mean_ci, score_episodes

__all__ = [
    "EpisodeResult",
    "GeneratePolicy",
    "Policy",
    "Score",
    "TaskAnchors",
    "TextEnv",
    "mean_ci",
    "rollout",
    "score_episodes",
]
