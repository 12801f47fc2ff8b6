"""Behaviour data like the published Wordle benchmark's: each guess is, with probability
`random_share`, a random valid word, otherwise a random word consistent with the feedback so far.

`lazy_share` adds a second kind of player, one per episode: a lazy player opens with the same
`lazy_turns` words every game, ignoring the feedback, and only then guesses words consistent with
it. Every player then opens with the lazy players' first word (a common opener), so after it both
kinds meet in the same states: the lazy words are the data's most frequent reply there, so greedy
imitation inherits them; the consistent guesses that solve sooner are in the data too, with their
returns, which is what offline RL can pick out (the maze's detour walkers, in Wordle).
"""

from __future__ import annotations

import random
from collections import Counter

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


LAZY_SEED = 12_345  # the lazy players' opening words: one fixed draw, the same in every dataset


def lazy_opening(words: tuple[str, ...], turns: int) -> list[str]:
    """The lazy players' fixed words: a seeded opener, then the words whose first letter the fewest
    words of the game share, so that the first letter of a lazy guess already tells it apart from
    the consistent guesses (a clean token-level choice for a value function to learn)."""
    opener = random.Random(LAZY_SEED).choice(words)
    firsts = Counter(w[0] for w in words)
    rest = sorted((w for w in words if w != opener), key=lambda w: (firsts[w[0]], w))
    return [opener, *rest[: turns - 1]]


class WordleBehaviourPolicy:
    """`lazy=True`: a lazy player (see the module's docstring); otherwise the random/consistent mixture."""

    def __init__(self, random_share: float = 0.3, seed: int = 0, words: int | None = None, spelled: bool = False,
                 lazy: bool = False, lazy_turns: int = 3, common_opener: bool = False):
        self.random_share = random_share
        self.rng = random.Random(seed)
        self.words = vocabulary(words)
        self.encoded = encode_words(self.words)
        self.write = spell if spelled else str
        self.lazy = lazy
        self.common_opener = common_opener  # every player opens with the lazy players' first word
        self.opening = lazy_opening(self.words, lazy_turns)

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        replies = []
        for conversation in conversations:
            turn = sum(m["role"] == "assistant" for m in conversation)
            if (self.lazy and turn < len(self.opening)) or (self.common_opener and turn == 0):
                replies.append(self.write(self.opening[turn]))
                continue
            if not self.lazy and self.rng.random() < self.random_share:
                replies.append(self.write(self.rng.choice(self.words)))
                continue
            history = parse_history(conversation)
            options = consistent_indices(self.encoded, history)
            word = self.words[self.rng.choice(options)] if len(options) else self.rng.choice(self.words)
            replies.append(self.write(word))
        return replies


def generate_wordle_episodes(n: int, random_share: float = 0.3, seed: int = 0, progress: bool = True,
                             words: int | None = None, spelled: bool = False,
                             feedback: str = "pattern", lazy_share: float = 0.0,
                             lazy_turns: int = 3, held_out: bool = True) -> list[EpisodeResult]:
    """`n` behaviour episodes on the training answers; `words=N`: the game on the N most frequent words;
    `spelled`: guesses written one letter at a time ("c r a n e"); `feedback`: how the game shows its
    answer ("pattern": "b y g b b", "letters": "cb ry ag nb eb"); `lazy_share`: the share of episodes
    played by a lazy player with `lazy_turns` fixed opening words; `held_out=False`: secret words from
    every word of the game, the evaluation's too (see `WordleEnv`)."""
    if not 0.0 <= lazy_share <= 1.0:
        raise ValueError(f"lazy_share must be between 0 and 1, got {lazy_share}.")
    players = [WordleBehaviourPolicy(random_share, seed, words, spelled, lazy, lazy_turns, common_opener=lazy_share > 0)
               for lazy in (False, True)]
    rng = random.Random(seed)
    kinds = [rng.random() < lazy_share for _ in range(n)]
    seeds = [seed * 1_000_003 + i for i in range(n)]
    results: list[EpisodeResult] = []
    for start in tqdm(range(0, n, 256), desc="Wordle behaviour episodes", disable=not progress, leave=False):
        for lazy in (False, True):  # each kind of player in batches: results are put back in seed order below
            chunk = [s for s, k in zip(seeds[start : start + 256], kinds[start : start + 256]) if k == lazy]
            results += rollout(lambda: WordleEnv("train", words, feedback, held_out), players[lazy], chunk, GUESSES,
                               progress=False)
    order = {s: i for i, s in enumerate(seeds)}
    return sorted(results, key=lambda r: order[r.seed])
