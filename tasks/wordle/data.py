"""Behaviour data like the published Wordle benchmark's: each guess is, with probability
`random_share`, a random valid word, otherwise a random word consistent with the feedback so far."""

from __future__ import annotations

import random

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import WordleEnv
from .game import GUESSES, consistent_indices, encode_words, vocabulary


def parse_history(conversation: list[dict]) -> list[tuple[str, str]]:
    """(guess, pattern) pairs from a Wordle conversation (skipping invalid guesses)."""
    history = []
    for reply, observation in zip(conversation, conversation[1:]):
        if reply["role"] == "assistant" and observation["role"] == "user":
            pattern = observation["content"].replace(" ", "")
            if len(pattern) == 5 and set(pattern) <= set("gyb"):
                history.append((reply["content"].strip().lower(), pattern))
    return history


class WordleBehaviourPolicy:
    def __init__(self, random_share: float = 0.3, seed: int = 0):
        self.random_share = random_share
        self.rng = random.Random(seed)
        self.words = vocabulary()
        self.encoded = encode_words(self.words)

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        replies = []
        for conversation in conversations:
            if self.rng.random() < self.random_share:
                replies.append(self.rng.choice(self.words))
                continue
            history = parse_history(conversation)
            options = consistent_indices(self.encoded, history)
            replies.append(self.words[self.rng.choice(options)] if len(options) else self.rng.choice(self.words))
        return replies


def generate_wordle_episodes(n: int, random_share: float = 0.3, seed: int = 0, progress: bool = True
                             ) -> list[EpisodeResult]:
    """`n` behaviour episodes on the training answers."""
    policy = WordleBehaviourPolicy(random_share, seed)
    seeds = [seed * 1_000_003 + i for i in range(n)]
    results = []
    for start in tqdm(range(0, n, 256), desc="Wordle behaviour episodes", disable=not progress, leave=False):
        results += rollout(lambda: WordleEnv("train"), policy, seeds[start : start + 256], GUESSES, progress=False)
    return results
