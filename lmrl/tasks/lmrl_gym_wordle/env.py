"""LMRL-Gym's Wordle as an lmrl text environment."""

from __future__ import annotations

import random

from .game import GUESSES, HEADER, answers, feedback, read_guess, show_feedback, word_index


class LMRLGymWordleEnv:
    """Guess the secret word of LMRL-Gym's 431-word list in 6 tries.

    The first observation is `"Wordle:\\n"`. A reply is a word of the list, its letters spaced out or not
    ("s l a t e", "slate"); the game answers one colour per letter ("b b y b g\\n", see
    [`feedback`]). Each guess costs -1 except the one that finds the secret, which gets 0 and ends the
    game; a reply that is not a word of the list gets `bad_word_reward` and an empty line, changes
    nothing else and still uses up a try. The 6th try ends the game, so (with the default
    `bad_word_reward`) a return is -(guesses - 1) when solved and -6 when not.

    Secrets: `split="eval"` enumerates the answers (seed s plays `answers[s % len(answers)]`, so 431
    consecutive seeds play each answer once); "train" and "validation" draw one at random from the
    seed, as LMRL-Gym does. `held_out_answers=N` sets N answers apart for "validation" (then
    enumerated) that "train" and "eval" never play.

    Example:
        ```python
        >>> env = LMRLGymWordleEnv("eval")
        >>> env.reset(seed=10_000)  # 10_000 % 431 = 87: the answer is "twirl"
        'Wordle:\\n'
        >>> env.step("s l a t e")
        ('b y b y b\\n', -1.0, False, {})
        >>> env.step("crane")  # not one of the 431 words
        ('\\n', -1.0, False, {'invalid': True})
        ```
    """

    def __init__(self, split: str = "eval", bad_word_reward: float = -1.0, held_out_answers: int = 0):
        self.split = split
        self.answers = answers(split, held_out_answers)
        self.enumerate = split == "eval" or (split == "validation" and held_out_answers > 0)
        self.bad_word_reward = float(bad_word_reward)
        self.answer = self.answers[0]
        self.tries = 0

    def reset(self, seed: int | None = None) -> str:
        if self.enumerate and seed is not None:
            self.answer = self.answers[seed % len(self.answers)]
        else:
            self.answer = random.Random(seed).choice(self.answers)
        self.tries = 0
        return HEADER

    def step(self, text: str) -> tuple[str, float, bool, dict]:
        guess = read_guess(text)
        self.tries += 1
        out_of_tries = self.tries >= GUESSES
        if guess not in word_index():
            return "\n", self.bad_word_reward, out_of_tries, {"invalid": True}
        observation = show_feedback(feedback(guess, self.answer))
        if guess == self.answer:
            return observation, 0.0, True, {"success": True}
        return observation, -1.0, out_of_tries, {}
