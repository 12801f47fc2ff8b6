"""Behaviour data for flight booking: agents of mixed diligence.

Each episode's agent asks about each constraint with its own probability (0.3 to 1.0), one or two
questions a turn, then acts on what it learned: the cheapest flight meeting the constraints it knows
(so skipped questions give wrong flights), "no flight" when none does, and the reservation checks
for change and cancel. One final action in ten is a random one (a slip).

Under AirDialogue's official success rule (the default) the agent also asks the customer's name (9
agents in 10; it asks before anything else) and writes it in the final action, misspelling it 1 time
in 20; an agent that never asked writes no name, and fails. With `success_rule="flight_status"` no
agent asks the name, and the episodes are the ones this generator made before names existed.
"""

from __future__ import annotations

import random

from tqdm.auto import tqdm

from lmrl.envs import EpisodeResult, rollout

from .env import FlightBookingEnv, meets
from .format import STATUSES, parse_action, render_action
from .rule import check_rule

ASK = {
    "airports": "Where are you flying from and to?",
    "dates": "What dates do you want to travel?",
    "price": "What is your budget?",
    "stops": "How many stops can you accept?",
    "time": "What time of day do you prefer?",
    "class": "Which class do you want?",
}
ASK_NAME = "May I have your name, please?"


def misspell(name: str, rng: random.Random) -> str:
    """The name with one letter (not the first) dropped, as a hurried agent types it."""
    i = rng.randrange(1, len(name))
    return name[:i] + name[i + 1:] if name[i].isalpha() else name[:i] + name[i + 1:].replace(" ", "", 1)


class AgentBehaviour:
    def __init__(self, rng: random.Random, success_rule: str = "official"):
        self.rng = rng
        diligence = rng.uniform(0.3, 1.0)
        self.to_ask = [topic for topic in ASK if rng.random() < diligence]
        rng.shuffle(self.to_ask)
        self.asks_name = check_rule(success_rule) == "official" and rng.random() < 0.9
        if self.asks_name:
            self.to_ask.append("name")  # asked first (questions are popped from the end)

    def final(self, env: FlightBookingEnv) -> str:
        action = self._action(env)
        if not self.asks_name or "name" not in self.asked:
            return render_action(*action)
        name = env.intent["name"]
        return render_action(*action, misspell(name, self.rng) if self.rng.random() < 0.05 else name)

    def _action(self, env: FlightBookingEnv) -> tuple[str, int | None]:
        rng, intent = self.rng, env.intent
        if rng.random() < 0.1:
            status = rng.choice(STATUSES)
            return status, rng.choice(env.kb)["flight_number"] if status in ("book", "change") else None
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
                return "cancel", None
            if not loose:
                return "no_flight", None
            best = min(loose, key=lambda f: (f["price"], f["flight_number"]))
            return intent["goal"], best["flight_number"]
        return "no_reservation", None

    def act(self, env: FlightBookingEnv) -> str:
        if not hasattr(self, "asked"):
            self.asked = []
        if env.intent["goal"] == "cancel":  # nothing to look up: at most the name to ask
            self.to_ask = [topic for topic in self.to_ask if topic == "name"]
        if not self.to_ask:
            return self.final(env)
        batch = [self.to_ask.pop() for _ in range(min(len(self.to_ask), self.rng.choice((1, 2))))]
        self.asked += batch
        return " ".join(ASK_NAME if t == "name" else ASK[t] for t in batch)


# what an unknown constraint is taken to be: whatever the flight has (so it never filters)
_ANY = {"goal": lambda f: None, "departure_airport": lambda f: f["departure_airport"],
        "return_airport": lambda f: f["return_airport"], "departure_day": lambda f: f["departure_day"],
        "return_day": lambda f: f["return_day"], "max_price": lambda f: f["price"],
        "max_connections": lambda f: f["num_connections"], "class": lambda f: f["class"],
        "departure_time": lambda f: "any"}


def generate_flight_episodes(n: int, seed: int = 0, num_flights: int = 30, max_turns: int = 10,
                             progress: bool = True, success_rule: str = "official") -> list[EpisodeResult]:
    """`n` behaviour episodes, scored under `success_rule` ("official": name, flight and status;
    "flight_status"); each row keeps its structured `context`, `intent`, `action`, `expected_action`
    and `success_rule`, in the AirDialogue converter's shapes (for relabelling and the outcome head)."""
    rng = random.Random(seed)
    results = []
    for i in tqdm(range(n), desc="Flight booking behaviour episodes", disable=not progress, leave=False):
        env = FlightBookingEnv(num_flights, max_turns, success_rule)
        agent = AgentBehaviour(random.Random(rng.random()), success_rule)

        def policy(conversations, env=env, agent=agent):
            return [agent.act(env)]

        result = rollout(lambda env=env: env, policy, [seed * 1_000_003 + i], max_turns, batch_size=1,
                         progress=False)[0]
        action = parse_action(result.messages[-1]["content"]) if result.messages[-1]["role"] == "assistant" else None
        result.extra = env.row_fields(action)
        results.append(result)
    return results
