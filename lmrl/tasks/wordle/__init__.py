"""Wordle: the real game over a list of 2,000 common English words (after the ILQL paper and LMRL-Gym)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from lmrl.envs import TaskAnchors
from lmrl.tasks import Task

from .data import WordleBehaviourPolicy, generate_wordle_episodes, parse_history
from .env import WordleEnv
from .game import GUESSES, Solver, answers, feedback, vocabulary

REFERENCE_FILE = Path(__file__).with_name("solver_reference.json")
REFERENCE_ANSWERS = 100  # the first 100 evaluation answers


def solver_reference(recompute: bool = False) -> dict:
    """The solver's average return on the first 100 evaluation answers (cached in a JSON file):
    `python -c "from lmrl.tasks.wordle import solver_reference; solver_reference(recompute=True)"`."""
    if REFERENCE_FILE.exists() and not recompute:
        return json.loads(REFERENCE_FILE.read_text())
    solver = Solver()
    guesses = [solver.play(answer) for answer in answers("eval")[:REFERENCE_ANSWERS]]
    returns = [-(g - 1) if g <= GUESSES else -float(GUESSES) for g in guesses]
    reference = {"solver": "greedy max-entropy over candidates (pool 300)", "answers": REFERENCE_ANSWERS,
                 "mean_guesses": sum(guesses) / len(guesses), "mean_return": sum(returns) / len(returns)}
    REFERENCE_FILE.write_text(json.dumps(reference, indent=2) + "\n")
    return reference


@lru_cache(maxsize=8)
def _solver_return(words: int, held_out: bool = True) -> float:
    """The solver's average return on the first 100 evaluation answers of the `words`-word game (on
    every word of it when the game holds none out)."""
    solver = Solver(vocabulary(words))
    guesses = [solver.play(answer) for answer in answers("eval", words, held_out)[:REFERENCE_ANSWERS]]
    return sum(-(g - 1) if g <= GUESSES else -float(GUESSES) for g in guesses) / len(guesses)


def wordle_anchors(dataset_return: float, words: int | None = None, held_out: bool = True) -> TaskAnchors:
    """0 = never solving (-6), 50 = the dataset's average return, 100 = the reference solver (on the
    smaller game's own words when `words` is set, or the game holds no answers out)."""
    if words is None and held_out:
        best = solver_reference()["mean_return"]
    else:
        best = _solver_return(words, held_out)
    return TaskAnchors(minimum=-float(GUESSES), dataset=dataset_return, best=best)


def _make_env(split: str = "eval", words: int | None = None, feedback: str = "pattern",
              held_out: bool = True) -> WordleEnv:
    return WordleEnv(split, words, feedback, held_out)


def _make_data(n: int, seed: int = 0, progress: bool = True, words: int | None = None, feedback: str = "pattern",
               held_out: bool = True, random_share: float = 0.3, spelled: bool = False, lazy_share: float = 0.0,
               lazy_turns: int = 3):
    return generate_wordle_episodes(n, random_share=random_share, seed=seed, progress=progress, words=words,
                                    spelled=spelled, feedback=feedback, lazy_share=lazy_share, lazy_turns=lazy_turns,
                                    held_out=held_out)


def _anchors(dataset_return: float, words: int | None = None, held_out: bool = True) -> TaskAnchors:
    return wordle_anchors(dataset_return, words, held_out)


TASK = Task(
    "wordle", _make_env, _make_data, _anchors,
    max_turns=GUESSES,
    max_new_tokens=12,  # a spelled guess ("c r a n e") takes 5 tokens and the end of the turn
)

__all__ = ["Solver", "TASK", "WordleBehaviourPolicy", "WordleEnv", "answers", "feedback", "generate_wordle_episodes",
           "parse_history", "solver_reference", "vocabulary", "wordle_anchors"]
