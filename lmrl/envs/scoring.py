"""One scorer: mean return with a 95% confidence interval, success rate, normalized score.

Normalized score (LMRL-Gym convention): piecewise linear in the mean return, 0 at the minimum
(or random) return, 50 at the dataset's average return, 100 at the best possible return.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# The first seed of the reported evaluation episodes (`lmrl eval`: seed, seed + 1, ...). Settings are chosen
# on other seeds.
EVAL_SEED = 10_000


@dataclass
class TaskAnchors:
    """Returns that fix the normalized scale of a task."""

    minimum: float
    dataset: float
    best: float

    def normalize(self, value: float) -> float:
        if value <= self.dataset:
            span = self.dataset - self.minimum
            return 50.0 * (value - self.minimum) / span if span > 0 else 50.0
        span = self.best - self.dataset
        return 50.0 + 50.0 * (value - self.dataset) / span if span > 0 else 100.0


@dataclass
class Score:
    episodes: int
    mean_return: float
    ci_low: float
    ci_high: float
    success_rate: float
    normalized: float
    normalized_low: float
    normalized_high: float
    invalid_action_rate: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def mean_ci(values: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """Mean and normal-approximation 95% confidence interval."""
    n = len(values)
    if n == 0:
        raise ValueError("No episodes to score.")
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * std / math.sqrt(n)
    return mean, mean - half, mean + half


def score_episodes(results, anchors: TaskAnchors) -> Score:
    """Score a list of [`EpisodeResult`]."""
    returns = [r.total_reward for r in results]
    mean, low, high = mean_ci(returns)
    turns = sum(sum(m["role"] == "assistant" for m in r.messages) for r in results)
    return Score(
        episodes=len(results),
        mean_return=mean,
        ci_low=low,
        ci_high=high,
        success_rate=sum(r.success for r in results) / len(results),
        normalized=anchors.normalize(mean),
        normalized_low=anchors.normalize(low),
        normalized_high=anchors.normalize(high),
        invalid_action_rate=sum(r.invalid_actions for r in results) / max(1, turns),
    )
