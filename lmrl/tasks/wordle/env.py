"""Wordle as a text environment: -1 for every guess that is not the answer, 6 guesses."""

from __future__ import annotations

import random

from .game import FEEDBACK_STYLES, GUESSES, answers, feedback, read_guess, show_feedback, vocabulary

SYSTEM_PROMPT = (
    "Let's play Wordle. Guess the secret 5-letter word in 6 tries. After each guess you see one letter "
    "per position: g = right letter, right place; y = in the word but elsewhere; b = not in the word."
)


class WordleEnv:
    """Reply with a 5-letter word (or its letters spaced out, `c r a n e`). Feedback is shown as e.g. `b y g b b`. A guess that is not in the
    word list costs -1 and uses up a try (the feedback says so); the answer costs 0 and ends the game.
    Returns are therefore -(guesses - 1) when solved and -6 when not. `words=N` plays a smaller game on
    the list's N most frequent words (guesses and answers); `feedback="letters"` shows each guessed
    letter with its colour ("cb ry ag nb eb") instead of the colours alone; `held_out=False` draws the
    secret word from every word of the game in both splits (by default every 5th word is kept for
    evaluation, so the data never solves those).

    Example:
        ```python
        >>> env = WordleEnv(split="eval")
        >>> env.reset(seed=0)
        'Your first guess?'
        >>> env.step("crane")  # the answer is "badge"
        ('b b y b g', -1.0, False, {})
        ```
    """

    system_prompt = SYSTEM_PROMPT

    def __init__(self, split: str = "eval", words: int | None = None, feedback: str = "pattern",
                 held_out: bool = True):
        if feedback not in FEEDBACK_STYLES:
            raise ValueError(f"feedback={feedback!r}: choose one of {', '.join(FEEDBACK_STYLES)}.")
        self.feedback_style = feedback
        self.answers = answers(split, words, held_out)
        self.valid = frozenset(vocabulary(words))
        self.answer = self.answers[0]
        self.history: list[tuple[str, str]] = []
        self.tries = 0

    def reset(self, seed: int | None = None) -> str:
        self.answer = random.Random(seed).choice(self.answers)
        self.history = []
        self.tries = 0
        return "Your first guess?"

    def step(self, text: str) -> tuple[str, float, bool, dict]:
        word = read_guess(text)  # "crane", "Crane." or spelled out, "c r a n e"
        self.tries += 1
        out_of_tries = self.tries >= GUESSES
        if word not in self.valid:
            return "Not a valid word; guess a 5-letter English word.", -1.0, out_of_tries, {"invalid": True}
        if word == self.answer:
            return "Solved!", 0.0, True, {"success": True}
        pattern = feedback(word, self.answer)
        self.history.append((word, pattern))
        return show_feedback(word, pattern, self.feedback_style), -1.0, out_of_tries, {}
