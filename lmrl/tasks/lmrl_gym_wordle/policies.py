"""LMRL-Gym's scripted Wordle players, as lmrl policies (a batch of conversations in, one reply each out).

Every player writes its guess as LMRL-Gym's data does, spelled out ("c r a n e"), and reads the game's
state from the conversation alone. `seed` makes a player's random choices repeatable.

- `RandomMixturePolicy(prob_smart)`: each guess is, with probability `prob_smart`, a random word that is
  consistent with the feedback so far, otherwise a random word of the list. Their dataset's player
  (`prob_smart=0.33`).
- `OptimalPolicy()`: the consistent word of highest expected information gain (ties broken at random):
  greedy, so not truly optimal. The best anchor of their normalized score comes from it.
- `StartWordPolicy()`: a random word of a fixed list of good first words (one still consistent with the
  feedback), or 5 random letters when none is; meant for the first guess.
- `WrongPolicy()`: a random word that the feedback has already ruled out.
- `RepeatPolicy(start)`: the first guess from `start`, then a random earlier guess again.
- `MixturePolicy(prob1, policy1, policy2)`: `policy1` with probability `prob1` at each guess, else `policy2`.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod

import numpy as np

from .game import (
    ALPHABET,
    GUESSES,
    LETTERS,
    candidates,
    feedback,
    parse_history,
    pattern_table,
    show_guess,
    word_list,
)

# LMRL-Gym's curated first words; 25 of the 28 are not in the 431-word list, so the game rejects them.
START_WORDS = ("opera", "tears", "soare", "roate", "raise", "arose", "earls", "laser", "reals", "aloes", "reais",
               "slate", "sauce", "slice", "shale", "saute", "share", "sooty", "shine", "suite", "crane", "adieu",
               "audio", "stare", "roast", "ratio", "arise", "tales")


class ScriptedPolicy(ABC):
    """A player that picks each guess from its conversation alone (subclasses define `choose`)."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        return [show_guess(self.choose(conversation)) for conversation in conversations]

    @abstractmethod
    def choose(self, conversation: list[dict]) -> str:
        """The next guess (a word of the list) given the conversation so far."""


class RandomMixturePolicy(ScriptedPolicy):
    """With probability `prob_smart` a random consistent word, otherwise a random word of the list.

    Example:
        ```python
        >>> RandomMixturePolicy(0.33, seed=0)([[{"role": "user", "content": "Wordle:\\n"}]])
        ['s k i l l']
        ```
    """

    def __init__(self, prob_smart: float = 0.33, seed: int = 0):
        super().__init__(seed)
        if not 0.0 <= prob_smart <= 1.0:
            raise ValueError(f"prob_smart must be between 0 and 1, got {prob_smart}.")
        self.prob_smart = prob_smart

    def choose(self, conversation: list[dict]) -> str:
        words = word_list()
        if self.rng.random() < self.prob_smart:
            return words[self.rng.choice(candidates(parse_history(conversation)))]
        return self.rng.choice(words)


def information_gains(alive: np.ndarray) -> np.ndarray:
    """For each consistent word (index in `alive`), log(#alive) minus the expected log of the number of
    words left after guessing it: sum over feedback classes of size c of c * log(c), divided by #alive."""
    codes = pattern_table()[np.ix_(alive, alive)].astype(np.int64)  # (guess, secret)
    counts = np.zeros((len(alive), 3**LETTERS), dtype=np.int64)
    np.add.at(counts, (np.arange(len(alive))[:, None], codes), 1)
    counts = np.sort(counts, axis=1)  # the same classes give the same float sum, whatever their order
    c_log_c = np.where(counts > 0, counts * np.log(np.maximum(counts, 1)), 0.0).sum(axis=1)
    return math.log(len(alive)) - c_log_c / len(alive)


class OptimalPolicy(ScriptedPolicy):
    """Greedy information gain over the consistent words (LMRL-Gym's "optimal" player); `start`, when
    given, makes the first guess. The best words of each state are cached.

    Example:
        ```python
        >>> OptimalPolicy(seed=0)([[{"role": "user", "content": "Wordle:\\n"}]])
        ['s l a t e']
        ```
    """

    def __init__(self, start: ScriptedPolicy | None = None, seed: int = 0):
        super().__init__(seed)
        self.start = start
        self.cache: dict[bytes, list[int]] = {}

    def choose(self, conversation: list[dict]) -> str:
        history = parse_history(conversation)
        if not history and self.start is not None:
            return self.start.choose(conversation)
        alive = candidates(history)
        key = alive.tobytes()
        if key not in self.cache:
            gains = information_gains(alive)
            best = gains.max()
            self.cache[key] = [int(i) for i, gain in zip(alive, gains) if gain >= best - 1e-12]
        return word_list()[self.rng.choice(self.cache[key])]


class StartWordPolicy(ScriptedPolicy):
    """A random start word still consistent with the feedback given to earlier start words, else 5
    random letters."""

    def __init__(self, start_words: tuple[str, ...] = START_WORDS, seed: int = 0):
        super().__init__(seed)
        self.start_words = tuple(start_words)

    def choose(self, conversation: list[dict]) -> str:
        history = [(g, p) for g, p in parse_history(conversation) if p is not None and g in self.start_words]
        options = [w for w in self.start_words if all(feedback(g, w) == p for g, p in history)]
        if not options:
            return "".join(self.rng.choice(ALPHABET) for _ in range(LETTERS))
        return self.rng.choice(options)


class WrongPolicy(ScriptedPolicy):
    """A random word of the list that the feedback has ruled out (any word when none is)."""

    def choose(self, conversation: list[dict]) -> str:
        words = word_list()
        ruled_out = np.setdiff1d(np.arange(len(words)), candidates(parse_history(conversation)))
        return words[self.rng.choice(ruled_out)] if len(ruled_out) else self.rng.choice(words)


class RepeatPolicy(ScriptedPolicy):
    """The first guess from `start`, then a random one of the earlier guesses (of the first `first_n`)."""

    def __init__(self, start: ScriptedPolicy, first_n: int | None = None, seed: int = 0):
        super().__init__(seed)
        self.start, self.first_n = start, first_n

    def choose(self, conversation: list[dict]) -> str:
        guesses = [g for g, _ in parse_history(conversation)]
        if not guesses:
            return self.start.choose(conversation)
        return self.rng.choice(guesses[: self.first_n])


class MixturePolicy(ScriptedPolicy):
    """`policy1` with probability `prob1` at each guess, else `policy2`."""

    def __init__(self, prob1: float, policy1: ScriptedPolicy, policy2: ScriptedPolicy, seed: int = 0):
        super().__init__(seed)
        self.prob1, self.policy1, self.policy2 = prob1, policy1, policy2

    def choose(self, conversation: list[dict]) -> str:
        return (self.policy1 if self.rng.random() < self.prob1 else self.policy2).choose(conversation)


def optimal_returns(secrets: tuple[str, ...] | None = None) -> float:
    """The exact mean return of `OptimalPolicy` (no start word) over `secrets` (default: every word),
    averaged over its random tie-breaks as well: what its rollouts on the enumerated answers tend to."""
    words = word_list()
    table = pattern_table()
    memo: dict[tuple[bytes, int], np.ndarray] = {}

    def returns(alive: np.ndarray, turn: int) -> np.ndarray:  # the expected return of each secret in alive
        key = (alive.tobytes(), turn)
        if key not in memo:
            gains = information_gains(alive)
            best = alive[gains >= gains.max() - 1e-12]
            total = np.zeros(len(alive))
            for guess in best:
                codes = table[guess, alive]
                for code in np.unique(codes):
                    members = codes == code
                    if alive[members].tolist() == [guess]:
                        continue  # solved: 0
                    later = returns(alive[members], turn + 1) if turn + 1 < GUESSES else 0.0
                    total[members] += -1.0 + later
            memo[key] = total / len(best)
        return memo[key]

    every = returns(np.arange(len(words)), 0)
    index = {w: i for i, w in enumerate(words)}
    chosen = words if secrets is None else secrets
    return float(np.mean([every[index[w]] for w in chosen]))
