"""Behaviour data like the published Wordle benchmark's: each guess is, with probability
`random_share`, a random valid word, otherwise a random word consistent with the feedback so far."""

from __future__ import annotations

import random

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import WordleEnv
from .game import GUESSES, consistent_indices, encode_words, read_feedback, read_guess, spell, vocabulary


def parse_history(conversation: list[dict]) -> list[tuple[str, str]]:
    """(guess, pattern) pairs from a Wordle conversation (skipping invalid guesses)."""
    history = []
    for reply, observation in zip(conversation, conversation[1:]):
        if reply["role"] == "assistant" and observation["role"] == "user":
            pattern = read_feedback(observation["content"])
            if pattern is not None:
                history.append((read_guess(reply["content"]), pattern))
    return history


class WordleBehaviourPolicy:
    def __init__(self, random_share: float = 0.3, seed: int = 0, words: int | None = None, spelled: bool = False):
        self.random_share = random_share
        self.rng = random.Random(seed)
        self.words = vocabulary(words)
        self.encoded = encode_words(self.words)
        self.write = spell if spelled else str

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        replies = []
        for conversation in conversations:
            if self.rng.random() < self.random_share:
                replies.append(self.write(self.rng.choice(self.words)))
                continue
            history = parse_history(conversation)
            options = consistent_indices(self.encoded, history)
            word = self.words[self.rng.choice(options)] if len(options) else self.rng.choice(self.words)
            replies.append(self.write(word))
        return replies


def generate_wordle_episodes(n: int, random_share: float = 0.3, seed: int = 0, progress: bool = True,
                             words: int | None = None, spelled: bool = False,
                             feedback: str = "pattern") -> list[EpisodeResult]:
    """`n` behaviour episodes on the training answers; `words=N`: the game on the N most frequent words;
    `spelled`: guesses written one letter at a time ("c r a n e"); `feedback`: how the game shows its
    answer ("pattern": "b y g b b", "letters": "cb ry ag nb eb")."""
    policy = WordleBehaviourPolicy(random_share, seed, words, spelled)
    seeds = [seed * 1_000_003 + i for i in range(n)]
    results = []
    for start in tqdm(range(0, n, 256), desc="Wordle behaviour episodes", disable=not progress, leave=False):
        results += rollout(lambda: WordleEnv("train", words, feedback), policy, seeds[start : start + 256], GUESSES, progress=False)
    return results
