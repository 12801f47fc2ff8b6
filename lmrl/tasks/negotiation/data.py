"""Behaviour data for negotiation: sellers of mixed skill, so the data holds good and bad concessions.

Each episode's seller follows one strategy (equal shares):
- pushover: accepts the buyer's first offer (or nearly meets it): always a deal, at a low price;
- stubborn: holds the list price: high prices from eager buyers, walk-aways from the rest;
- steady:   concedes 30-60% of the gap to the buyer's offer each turn: usually good deals;
- erratic:  each turn accepts, holds or concedes a random share of the gap.
Replies are natural sentences around a price slot, e.g. "The lowest I can go is $180.".
"""

from __future__ import annotations

import math
import random

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import NegotiationEnv, _round
from .prices import format_price

STRATEGIES = ("pushover", "stubborn", "steady", "erratic")
COUNTERS = ("I can do {p}.", "How about {p}?", "The lowest I can go is {p}.", "{p} and it's yours.",
            "Would you do {p}?")
HOLDS = ("Sorry, {p} is my best price.", "I can't go lower than {p}.", "The price is firm at {p}.")
ACCEPTS = ("Deal.", "Okay, you have a deal.", "Sure, {p} works for me.")


class SellerBehaviour:
    """One scripted seller; reads the buyer's offer and its own last ask from the environment."""

    def __init__(self, strategy: str, rng: random.Random):
        self.strategy = strategy
        self.rng = rng
        self.step_share = rng.uniform(0.3, 0.6)

    def _say(self, templates, price: float) -> str:
        return self.rng.choice(templates).format(p=format_price(price))

    def act(self, env: NegotiationEnv) -> str:
        ask, offer, rng = env.ask, env.offer, self.rng
        if self.strategy == "pushover":
            if rng.random() < 0.8:
                return self._say(ACCEPTS, offer)
            return self._say(COUNTERS, _round(offer + 0.2 * (ask - offer)))
        if self.strategy == "stubborn":
            return self._say(HOLDS, ask)
        if self.strategy == "steady":
            if offer >= 0.85 * ask:
                return self._say(ACCEPTS, offer)
            return self._say(COUNTERS, _round(ask - self.step_share * (ask - offer)))
        choice = rng.random()
        if choice < 0.25:
            return self._say(ACCEPTS, offer)
        if choice < 0.5:
            return self._say(HOLDS, ask)
        return self._say(COUNTERS, _round(ask - rng.uniform(0.05, 0.9) * (ask - offer)))


def generate_negotiation_episodes(n: int, seed: int = 0, max_turns: int = 10, progress: bool = True,
                                  styles: list[str] | None = None) -> list[EpisodeResult]:
    """`n` behaviour episodes, each against a fresh buyer drawn from `seed`."""
    rng = random.Random(seed)
    results = []
    for i in tqdm(range(n), desc="Negotiation behaviour episodes", disable=not progress, leave=False):
        env = NegotiationEnv(styles)
        seller = SellerBehaviour(rng.choice(STRATEGIES), random.Random(rng.random()))

        def policy(conversations, env=env, seller=seller):
            return [seller.act(env)]

        results += rollout(lambda env=env: env, policy, [seed * 1_000_003 + i], max_turns, batch_size=1,
                           progress=False)
    return results


def oracle_return(seed: int, styles: list[str] | None = None) -> float:
    """The best return against the buyer of `seed`, for a seller that knows the buyer's rules: hold
    the list price while the buyer concedes, and on the buyer's last turn of patience ask exactly
    the most it will accept."""
    env = NegotiationEnv(styles)
    env.reset(seed)
    while True:
        if env.patience <= 1:
            reply = f"I can do {format_price(max(env.offer, math.floor(env.limit())))}."
        else:
            reply = f"Sorry, {format_price(env.list_price)} is my best price."
        _, reward, done, _ = env.step(reply)
        if done:
            return reward
