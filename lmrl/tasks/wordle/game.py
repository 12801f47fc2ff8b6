"""Wordle rules, the word list and a reference solver."""

from __future__ import annotations

import random
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

WORD_FILE = Path(__file__).with_name("words.txt")
GUESSES = 6


@lru_cache(maxsize=8)
def vocabulary(size: int | None = None) -> tuple[str, ...]:
    """The valid words: the 2,000 of the list (see make_word_list.py for how it was made), most frequent
    first, or its first `size` (a smaller game, e.g. for a CPU: guesses and answers both come from them)."""
    words = tuple(WORD_FILE.read_text().split())
    if size is None:
        return words
    if not 10 <= size <= len(words):
        raise ValueError(f"words={size}: choose between 10 and {len(words)} (the list's length), or None for all.")
    return words[:size]


def spell(word: str) -> str:
    """A guess written one letter at a time ("c r a n e"), so that a tokenizer gives each letter a token."""
    return " ".join(word)


def read_guess(text: str) -> str:
    """The word a reply guesses: lower case, spaces between letters and a final period dropped."""
    return "".join(text.strip().lower().rstrip(".!").split())


FEEDBACK_STYLES = ("pattern", "letters")


def show_feedback(guess: str, pattern: str, style: str = "pattern") -> str:
    """Feedback as the player sees it: `pattern` gives one colour per position ("b y g b b"); `letters`
    pairs each guessed letter with its colour ("cb ry ag nb eb"), so a letter and what the game said of it
    sit in one word (with a tokenizer trained on the data, one token)."""
    if style == "pattern":
        return " ".join(pattern)
    if style == "letters":
        return " ".join(letter + colour for letter, colour in zip(guess, pattern))
    raise ValueError(f"feedback={style!r}: choose one of {', '.join(FEEDBACK_STYLES)}.")


def read_feedback(text: str) -> str | None:
    """The colour pattern ("bygbb") of a feedback line in either style, or None for any other line."""
    parts = text.split()
    if len(parts) == 5 and all(len(p) == 2 and p[0].isalpha() for p in parts):
        parts = [p[1] for p in parts]
    pattern = "".join(parts)
    return pattern if len(parts) == 5 and len(pattern) == 5 and set(pattern) <= set("gyb") else None


def answers(split: str = "all", size: int | None = None, held_out: bool = True) -> tuple[str, ...]:
    """Secret words: every 5th word of the list is held out for evaluation; `held_out=False`: every word,
    in every split."""
    words = vocabulary(size)
    if split not in ("train", "eval", "all"):
        raise ValueError(f"split must be 'train', 'eval' or 'all', got {split!r}.")
    if split == "eval" and held_out:
        return words[::5]
    if split == "train" and held_out:
        return tuple(w for i, w in enumerate(words) if i % 5)
    return words


def feedback(guess: str, answer: str) -> str:
    """One letter per position: 'g' right letter in the right place, 'y' in the word elsewhere,
    'b' not in the word. Repeated letters: greens are matched first, then yellows left to right,
    each using up one unmatched copy in the answer (so extra copies get 'b')."""
    result = ["b"] * 5
    unmatched = Counter(a for g, a in zip(guess, answer) if g != a)
    for i, (g, a) in enumerate(zip(guess, answer)):
        if g == a:
            result[i] = "g"
    for i, g in enumerate(guess):
        if result[i] != "g" and unmatched[g] > 0:
            result[i] = "y"
            unmatched[g] -= 1
    return "".join(result)


def encode_words(words) -> np.ndarray:
    return np.array([[ord(c) - 97 for c in w] for w in words], dtype=np.int64)


def feedback_codes(guess: str, words: np.ndarray) -> np.ndarray:
    """`feedback(guess, w)` for every encoded word at once, as base-3 codes (b=0, y=1, g=2)."""
    g = np.array([ord(c) - 97 for c in guess])
    green = words == g  # [N, 5]
    counts = np.zeros((len(words), 26), dtype=np.int64)
    rows = np.arange(len(words))
    for i in range(5):
        np.add.at(counts, (rows[~green[:, i]], words[~green[:, i], i]), 1)
    codes = np.zeros(len(words), dtype=np.int64)
    for i in range(5):
        yellow = ~green[:, i] & (counts[:, g[i]] > 0)
        counts[yellow, g[i]] -= 1
        codes += (2 * green[:, i] + yellow) * 3**i
    return codes


def code_of(pattern: str) -> int:
    return sum("byg".index(ch) * 3**i for i, ch in enumerate(pattern))


def consistent_indices(encoded: np.ndarray, history: list[tuple[str, str]]) -> np.ndarray:
    """Indices of the encoded words that would have produced every (guess, pattern) in `history`."""
    candidates = np.arange(len(encoded))
    for word, pattern in history:
        candidates = candidates[feedback_codes(word, encoded[candidates]) == code_of(pattern)]
    return candidates


class Solver:
    """Greedy information-maximizing player: guess the candidate whose feedback splits the remaining
    candidates into the most even groups (highest entropy), among at most `pool` candidates.
    Its average return over the evaluation answers is the task's best-possible anchor."""

    def __init__(self, words: tuple[str, ...] | None = None, pool: int = 300, seed: int = 0):
        self.words = tuple(words or vocabulary())
        self.encoded = encode_words(self.words)
        self.pool = pool
        self.rng = random.Random(seed)
        self._opener: str | None = None

    def _entropy(self, guess: str, candidates: np.ndarray) -> float:
        _, counts = np.unique(feedback_codes(guess, self.encoded[candidates]), return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum())

    def guess(self, history: list[tuple[str, str]]) -> str:
        if not history:  # the opener is the same every game
            if self._opener is None:
                self._opener = self._best(np.arange(len(self.words)))
            return self._opener
        candidates = consistent_indices(self.encoded, history)
        if len(candidates) == 0:
            raise ValueError("No word of the list fits this feedback.")
        return self._best(candidates)

    def _best(self, candidates: np.ndarray) -> str:
        if len(candidates) <= 2:
            return self.words[candidates[0]]
        pool = candidates if len(candidates) <= self.pool else sorted(self.rng.sample(list(candidates), self.pool))
        return max((self.words[i] for i in pool), key=lambda w: self._entropy(w, candidates))

    def play(self, answer: str) -> int:
        """Number of guesses it needs (GUESSES + 1 when it fails)."""
        history: list[tuple[str, str]] = []
        for turn in range(1, GUESSES + 1):
            word = self.guess(history)
            if word == answer:
                return turn
            history.append((word, feedback(word, answer)))
        return GUESSES + 1


def consistent(word: str, history: list[tuple[str, str]]) -> bool:
    return all(feedback(guess, word) == pattern for guess, pattern in history)
