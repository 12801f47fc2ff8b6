"""LMRL-Gym's Wordle behaviour data, made again: `RandomMixturePolicy(prob_smart=0.33)` playing secrets
drawn at random from the answers (their `misc/data_gen.py`, run with `--prob-smart 0.33` on
`wordle_official_400.txt`)."""

from __future__ import annotations

import statistics

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import LMRLGymWordleEnv
from .game import GUESSES
from .policies import RandomMixturePolicy

BATCH = 1024


def generate_episodes(n: int, prob_smart: float = 0.33, seed: int = 0, progress: bool = True,
                      bad_word_reward: float = -1.0, held_out_answers: int = 0) -> list[EpisodeResult]:
    """`n` episodes of the data's player on the "train" answers (all 431 unless `held_out_answers`); the
    episode seeds are `seed * 1_000_003 + i`, so datasets made with different seeds do not share them."""
    player = RandomMixturePolicy(prob_smart, seed=seed)
    seeds = [seed * 1_000_003 + i for i in range(n)]
    results: list[EpisodeResult] = []
    for start in tqdm(range(0, n, BATCH), desc="LMRL-Gym Wordle episodes", disable=not progress, leave=False):
        results += rollout(lambda: LMRLGymWordleEnv("train", bad_word_reward, held_out_answers), player,
                           seeds[start : start + BATCH], GUESSES, batch_size=BATCH, progress=False)
    return results


def dataset_statistics(episodes: list[EpisodeResult]) -> dict:
    """What LMRL-Gym's `load_results.py` measures of a Wordle dataset: the mean return, the share of
    solved games (return above -6) and the mean number of guesses, with the returns' spread."""
    returns = [e.total_reward for e in episodes]
    guesses = [sum(m["role"] == "assistant" for m in e.messages) for e in episodes]
    return {"episodes": len(episodes), "mean_return": statistics.fmean(returns),
            "std_return": statistics.pstdev(returns),
            "success_rate": sum(e.success for e in episodes) / len(episodes),
            "mean_guesses": statistics.fmean(guesses),
            "invalid_rate": sum(e.invalid_actions for e in episodes) / max(1, sum(guesses))}
