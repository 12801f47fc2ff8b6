"""Reference policies for LMRL-Gym's Wordle: a random word, each component of the data's mixture, the
mixture itself, and their "optimal" player. Every one reads only the conversation (the guesses and their
feedback, which the agent sees too), so all are kind "reference"."""

from __future__ import annotations

from lmrl.envs import ReferencePolicy

from .policies import OptimalPolicy, RandomMixturePolicy


def reference_policies(rows: list[dict], seed: int = 0, prob_smart: float = 0.33) -> list[ReferencePolicy]:
    """random (also the data's "random" component), consistent (its "smart" component), behaviour (the
    mixture) and optimal. `rows` are not needed: none of these is learned from the data."""
    return [
        ReferencePolicy("random", RandomMixturePolicy(0.0, seed=seed), "reference",
                        "a uniformly random word of the 431 (every guess valid); the mixture's random component"),
        ReferencePolicy("consistent", RandomMixturePolicy(1.0, seed=seed), "reference",
                        "a uniformly random word consistent with the feedback so far; the mixture's smart component"),
        ReferencePolicy("behaviour", RandomMixturePolicy(prob_smart, seed=seed), "reference",
                        f"the data's player, RandomMixturePolicy(prob_smart={prob_smart}): the consistent "
                        "component with that probability at each guess, else the random one"),
        ReferencePolicy("optimal", OptimalPolicy(seed=seed), "reference",
                        "LMRL-Gym's OptimalPolicy: the consistent word of highest expected information gain "
                        "(greedy, ties at random); it reads only the feedback, which the agent sees too"),
    ]
