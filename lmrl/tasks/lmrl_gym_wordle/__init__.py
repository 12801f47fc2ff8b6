"""LMRL-Gym's Wordle, ported exactly: its 431-word list, feedback, rewards, data policy and normalized score
(see this folder's README for where each fact comes from)."""

from __future__ import annotations

from functools import lru_cache

from lmrl.envs import TaskAnchors
from lmrl.tasks import Task

from .data import dataset_statistics, generate_episodes
from .env import LMRLGymWordleEnv
from .game import GUESSES, answers, feedback, word_list
from .policies import (
    MixturePolicy,
    OptimalPolicy,
    RandomMixturePolicy,
    RepeatPolicy,
    StartWordPolicy,
    WrongPolicy,
    optimal_returns,
)
from .reference import reference_policies as _reference_policies

# The anchors of LMRL-Gym's Wordle score (llm_rl_scripts/wordle/load_results.py): their dataset's mean
# return scores 50, their "optimal" player's mean return scores 100.
PUBLISHED_DATASET_RETURN = -4.121715
PUBLISHED_BEST_RETURN = -1.935
NORMALIZATIONS = ("published", "dataset")


def lmrl_gym_score(mean_return: float, dataset_return: float = PUBLISHED_DATASET_RETURN,
                   best_return: float = PUBLISHED_BEST_RETURN) -> float:
    """LMRL-Gym's normalized Wordle score: one straight line through 50 at the dataset's mean return and 100
    at the best player's (below the dataset it goes on with the same slope, to 0 at 2 * dataset - best).

    Example:
        >>> round(lmrl_gym_score(-2.035400390625), 2)  # their ILQL's mean return
        97.7
    """
    return 50.0 + 50.0 * (mean_return - dataset_return) / (best_return - dataset_return)


def lmrl_gym_anchors(dataset_return: float = PUBLISHED_DATASET_RETURN,
                     best_return: float = PUBLISHED_BEST_RETURN) -> TaskAnchors:
    """The same line as [`lmrl_gym_score`] as lmrl's anchors: `minimum` is where it crosses 0
    (2 * dataset - best = -6.30843 with the published anchors, below the lowest return, -6)."""
    return TaskAnchors(minimum=2 * dataset_return - best_return, dataset=dataset_return, best=best_return)


@lru_cache(maxsize=8)
def _optimal_return(held_out_answers: int) -> float:
    return optimal_returns(answers("eval", held_out_answers))


def _make_env(split: str = "eval", bad_word_reward: float = -1.0, held_out_answers: int = 0) -> LMRLGymWordleEnv:
    return LMRLGymWordleEnv(split, bad_word_reward, held_out_answers)


def _make_data(n: int, seed: int = 0, progress: bool = True, prob_smart: float = 0.33, bad_word_reward: float = -1.0,
               held_out_answers: int = 0):
    return generate_episodes(n, prob_smart=prob_smart, seed=seed, progress=progress, bad_word_reward=bad_word_reward,
                             held_out_answers=held_out_answers)


def _anchors(dataset_return: float, normalization: str = "published", held_out_answers: int = 0) -> TaskAnchors:
    """"published": LMRL-Gym's two numbers, whatever the data; "dataset": 50 at this dataset's mean return
    and 100 at the exact mean return of their optimal player on the evaluation answers."""
    if normalization == "published":
        return lmrl_gym_anchors()
    if normalization == "dataset":
        return lmrl_gym_anchors(dataset_return, _optimal_return(held_out_answers))
    raise ValueError(f"normalization={normalization!r}: choose one of {', '.join(NORMALIZATIONS)}.")


TASK = Task(
    "lmrl_gym_wordle", _make_env, _make_data, _anchors,
    max_turns=GUESSES,
    max_new_tokens=10,  # a spelled guess ("c r a n e") is 5 tokens, then the end of the turn
    reference_policies=_reference_policies,
)

__all__ = ["PUBLISHED_BEST_RETURN", "PUBLISHED_DATASET_RETURN", "TASK", "LMRLGymWordleEnv", "MixturePolicy",
           "OptimalPolicy", "RandomMixturePolicy", "RepeatPolicy", "StartWordPolicy", "WrongPolicy", "answers",
           "dataset_statistics", "feedback", "generate_episodes", "lmrl_gym_anchors", "lmrl_gym_score",
           "optimal_returns", "word_list"]
