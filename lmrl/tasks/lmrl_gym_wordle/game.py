"""LMRL-Gym's Wordle rules: its word list, its feedback, how it writes guesses and feedback as text.

The feedback differs from the newspaper game on repeated letters: each position is judged alone,
`g` when the guessed letter is the answer's letter there, otherwise `y` when the letter is anywhere
in the answer, otherwise `b`. Copies are not counted, so "speed" against "abide" is `b b y y y`.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import numpy as np

WORD_FILE = Path(__file__).with_name("words.txt")
LETTERS = 5
GUESSES = 6
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
COLOURS = "byg"  # a pattern's code is sum(3**i * COLOURS.index(colour_i))
HEADER = "Wordle:\n"  # the first observation: the text every LMRL-Gym Wordle history starts with
HELD_OUT_SEED = 32  # the draw that picks `held_out_answers` answers, fixed so that every run agrees


@lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    """The game's 431 words, in the file's order: the secret is one of them and a guess must be one."""
    words = tuple(line.strip() for line in WORD_FILE.read_text().splitlines())
    return tuple(w for w in words if len(w) == LETTERS)


def feedback(guess: str, answer: str) -> str:
    """The colour of each position of `guess` ("gybbg"): g right letter in the right place, y a letter
    of the answer elsewhere, b a letter not in the answer (each position on its own, copies not counted).

    Example:
        >>> feedback("eerie", "there")
        'yyybg'
    """
    return "".join("g" if g == a else "y" if g in answer else "b" for g, a in zip(guess, answer))


def show_guess(word: str) -> str:
    """A guess as LMRL-Gym's histories write it, its letters spaced out ("c r a n e"). Their guesses end
    with a newline, the token their decoder stops at; an lmrl reply ends with the end-of-turn token
    instead, so the newline is left out (`read_guess` accepts it)."""
    return " ".join(word)


def show_feedback(pattern: str) -> str:
    """Feedback as LMRL-Gym's histories write it ("g y b b g\\n"); an invalid guess gets an empty line."""
    return " ".join(pattern) + "\n"


def read_guess(text: str) -> str:
    """The word a reply guesses, read as LMRL-Gym reads it: outer whitespace and every space removed,
    nothing else changed ("c r a n e\\n" and "crane" are both "crane"; "Crane" stays invalid)."""
    return text.strip().replace(" ", "")


def read_feedback(text: str) -> str | None:
    """The pattern ("gybbg") of a feedback line, or None for the empty line of an invalid guess."""
    pattern = text.strip().replace(" ", "")
    return pattern if len(pattern) == LETTERS and set(pattern) <= set(COLOURS) else None


def answers(split: str = "eval", held_out_answers: int = 0) -> tuple[str, ...]:
    """The secret words of a split. LMRL-Gym draws the secret from every word, so by default every split
    has all 431; `held_out_answers=N` sets N of them (a fixed draw) apart as the validation answers,
    which the data ("train") and "eval" then never use."""
    words = word_list()
    if split not in ("train", "validation", "eval"):
        raise ValueError(f"split must be 'train', 'validation' or 'eval', got {split!r}.")
    if not 0 <= held_out_answers < len(words):
        raise ValueError(f"held_out_answers={held_out_answers}: choose from 0 to {len(words) - 1}.")
    if held_out_answers == 0:
        return words
    held = set(random.Random(HELD_OUT_SEED).sample(words, held_out_answers))
    if split == "validation":
        return tuple(w for w in words if w in held)
    return tuple(w for w in words if w not in held)


@lru_cache(maxsize=1)
def pattern_table() -> np.ndarray:
    """`table[g, s]`: the code of `feedback(words[g], words[s])` for every pair of the word list (int16)."""
    letters = np.array([[ALPHABET.index(c) for c in w] for w in word_list()], dtype=np.int64)  # (n, 5)
    has = np.zeros((len(letters), len(ALPHABET)), dtype=bool)  # (n, 26): letter in word
    np.put_along_axis(has, letters, True, axis=1)
    green = letters[:, None, :] == letters[None, :, :]  # (guess, secret, position)
    present = has.T[letters]  # (guess, position, secret): guessed letter in the secret
    colour = np.where(green, 2, present.transpose(0, 2, 1).astype(np.int64))
    return (colour * 3 ** np.arange(LETTERS)).sum(axis=2).astype(np.int16)


def pattern_code(pattern: str) -> int:
    return sum(3**i * COLOURS.index(c) for i, c in enumerate(pattern))


@lru_cache(maxsize=1)
def word_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(word_list())}


def candidates(history: list[tuple[str, str | None]]) -> np.ndarray:
    """The indices of the words consistent with every (guess, pattern) of `history` (invalid guesses,
    pattern None, are skipped, as LMRL-Gym's game does): the words the secret can still be."""
    table, index = pattern_table(), word_index()
    alive = np.arange(len(word_list()))
    for guess, pattern in history:
        if pattern is not None and guess in index:
            alive = alive[table[index[guess], alive] == pattern_code(pattern)]
    return alive


def parse_history(conversation: list[dict]) -> list[tuple[str, str | None]]:
    """(guess, pattern) for each reply of a conversation; the pattern is None where the game answered
    with an empty line (an invalid guess) or has not answered yet."""
    history = []
    for i, message in enumerate(conversation):
        if message["role"] == "assistant":
            after = conversation[i + 1] if i + 1 < len(conversation) else None
            pattern = read_feedback(after["content"]) if after and after["role"] == "user" else None
            history.append((read_guess(message["content"]), pattern))
    return history
