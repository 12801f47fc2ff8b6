"""Behaviour data for flight booking: agents of mixed diligence.

Each episode's agent asks about each constraint with its own probability (0.3 to 1.0), one or two
questions a turn, then acts on what it learned: the cheapest flight meeting the constraints it knows
(so skipped questions give wrong flights), "no flight" when none does, and the reservation checks
for change and cancel. One final action in ten is a random one (a slip).
"""

from __future__ import annotations

import random

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import FlightBookingEnv, correct_action, meets
from .format import STATUSES, render_action

ASK = {
    "airports": "Where are you flying from and to?",
    "dates": "What dates do you want to travel?",
    "price": "What is your budget?",
    "stops": "How many stops can you accept?",
    "time": "What time of day do you prefer?",
    "class": "Which class do you want?",
}


class AgentBehaviour:
    def __init__(self, rng: random.Random):
        self.rng = rng
        diligence = rng.uniform(0.3, 1.0)
        self.to_ask = [topic for topic in ASK if rng.random() < diligence]
        rng.shuffle(self.to_ask)

    def final(self, env: FlightBookingEnv) -> str:
        rng, intent = self.rng, env.intent
        if rng.random() < 0.1:
            status = rng.choice(STATUSES)
            return render_action(status, rng.choice(env.kb)["flight_number"] if status in ("book", "change") else None)
        known = dict(intent)  # the agent acts on the constraints it asked about, the others left open
        for topic, keys in (("airports", ("departure_airport", "return_airport")), ("dates", ("departure_day", "return_day")),
                            ("price", ("max_price",)), ("stops", ("max_connections",)), ("time", ("departure_time",)),
                            ("class", ("class",))):
            if topic not in self.asked:
                for key in keys:
                    known[key] = None
        loose = [f for f in env.kb if meets(f, {k: (v if v is not None else _ANY[k](f)) for k, v in known.items()})]
        if intent["goal"] == "book" or env.reservation:
            if intent["goal"] == "cancel":
                return render_action("cancel")
            if not loose:
                return render_action("no_flight")
            best = min(loose, key=lambda f: (f["price"], f["flight_number"]))
            return render_action(intent["goal"], best["flight_number"])
        return render_action("no_reservation")

    def act(self, env: FlightBookingEnv) -> str:
        if not hasattr(self, "asked"):
            self.asked = []
        if env.intent["goal"] == "cancel" or not self.to_ask:
            return self.final(env)
        batch = [self.to_ask.pop() for _ in range(min(len(self.to_ask), self.rng.choice((1, 2))))]
        self.asked += batch
        return " ".join(ASK[t] for t in batch)


# what an unknown constraint is taken to be: whatever the flight has (so it never filters)
_ANY = {"goal": lambda f: None, "departure_airport": lambda f: f["departure_airport"],
        "return_airport": lambda f: f["return_airport"], "departure_day": lambda f: f["departure_day"],
        "return_day": lambda f: f["return_day"], "max_price": lambda f: f["price"],
        "max_connections": lambda f: f["num_connections"], "class": lambda f: f["class"],
        "departure_time": lambda f: "any"}


def generate_flight_episodes(n: int, seed: int = 0, num_flights: int = 30, max_turns: int = 10,
                             progress: bool = True) -> list[EpisodeResult]:
    """`n` behaviour episodes; each row keeps its structured `context`, `intent`, `action` and
    `expected_action` (for relabelling and the outcome head)."""
    rng = random.Random(seed)
    results = []
    for i in tqdm(range(n), desc="Flight booking behaviour episodes", disable=not progress, leave=False):
        env = FlightBookingEnv(num_flights, max_turns)
        agent = AgentBehaviour(random.Random(rng.random()))

        def policy(conversations, env=env, agent=agent):
            return [agent.act(env)]

        result = rollout(lambda env=env: env, policy, [seed * 1_000_003 + i], max_turns, batch_size=1,
                         progress=False)[0]
        from .format import parse_action

        action = parse_action(result.messages[-1]["content"]) if result.messages[-1]["role"] == "assistant" else None
        expected = correct_action(env.kb, env.reservation, env.intent)
        result.extra = {"context": env.context, "intent": env.intent,
                        "action": {"status": action[0], "flight": action[1]} if action else None,
                        "expected_action": {"status": expected[0], "flight": expected[1]}}
        results.append(result)
    return results
