"""One scorer: mean return with a 95% confidence interval, success rate, normalized score; and the
statistics over seeds that `lmrl benchmark` reports (Student-t intervals, paired differences).

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
    # why the normalized interval is not shown (None: it is): the return interval maps past 100
    normalized_note: str | None = None

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
    """Score a list of [`EpisodeResult`].

    The interval is on the mean return over these episodes. When the episodes enumerate a finite
    evaluation set (greedy decoding on fixed starts), its width is the spread of the starts' returns,
    not chance, and mapped through the anchors it can pass 100 (the best return averaged over the
    starts, which no policy passes): then `normalized_note` says so and the normalized interval is
    not to be shown (`normalized_low`/`normalized_high` keep the mapped values)."""
    returns = [r.total_reward for r in results]
    mean, low, high = mean_ci(returns)
    turns = sum(sum(m["role"] == "assistant" for m in r.messages) for r in results)
    note = None
    if anchors.normalize(high) > 100.0:
        note = (f"no interval: the return interval passes the best return ({anchors.best:g}), which no policy "
                f"passes on average; on an enumerated evaluation set the score is exact for its {len(results)} "
                "episodes")
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
        normalized_note=note,
    )


def format_normalized(score: dict) -> str:
    """`75.0 [60.1, 89.9]`, or `99.8 (no interval: ...)` when the interval passes 100 (see
    [`score_episodes`]). `score` is a `Score.as_dict()` (an `eval.json`)."""
    if score.get("normalized_note"):
        return f"{score['normalized']:.1f} ({score['normalized_note']})"
    return f"{score['normalized']:.1f} [{score['normalized_low']:.1f}, {score['normalized_high']:.1f}]"


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz), accurate to ~1e-12."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below the mean; use the symmetry above it
        return 1.0 - _regularized_beta(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * f


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _regularized_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom (no scipy): the CDF inverted by
    bisection to 1e-10.

    Example:
        ```python
        >>> round(t_quantile(0.975, 4), 3)
        2.776
        ```
    """
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}.")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    while high - low > 1e-10 * max(1.0, high):
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` (e.g. one score per seed) and its Student-t interval with n - 1 degrees of
    freedom: mean -/+ t * s / sqrt(n). With one value there is no interval (NaN bounds).

    Example:
        ```python
        >>> t_interval([30.0, 40.0, 50.0])  # s = 10, t(0.975, 2) = 4.303
        (40.0, 15.15..., 64.84...)
        ```
    """
    n = len(values)
    if n == 0:
        raise ValueError("No values to average.")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_difference(values: dict[int, float], baseline: dict[int, float],
                      confidence: float = 0.95) -> tuple[float, float, float, int] | None:
    """Mean over the seeds both have of `values[s] - baseline[s]` (the same seed's data for both), its
    t-interval and the number of pairs; None without a common seed."""
    common = sorted(set(values) & set(baseline))
    if not common:
        return None
    return (*t_interval([values[s] - baseline[s] for s in common], confidence), len(common))
