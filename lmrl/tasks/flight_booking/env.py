"""Flight booking (after AirDialogue/CALM): an agent with a flight table serves a scripted customer.

The customer has an intent: a goal (book, change or cancel) and constraints (airports, dates, time
of day, price cap, stops, class). The agent sees the flight table and whether a reservation is on
record, but learns the constraints only by asking. The episode ends with the agent's final action
("Final action: book flight 1012.", "... change flight N", "cancel", "no flight", "no reservation").

The correct action: book or change the cheapest flight that meets every constraint (any flight tied
for the lowest price counts; `correct_action` names the lowest-numbered), "no flight" when none
does; change and cancel need a reservation, else "no reservation". The customer has a name and
gives it when asked. Reward 1 when the final action succeeds under `success_rule` (see `rule.py`:
by default AirDialogue's, which also needs the customer's name in the action, "Final action: book
flight 1012 for Edward Hall."; "flight_status" drops the name), 0 otherwise, no partial credit; 0
too when the customer runs out of patience (`max_turns` agent turns).
"""

from __future__ import annotations

import random
import re

from .format import FinalAction, parse_action, render_action, render_context
from .rule import check_rule, is_success

AIRPORTS = ("ATL", "BOS", "DEN", "DFW", "DTW", "IAD", "JFK", "LAX", "ORD", "SFO")
AIRLINES = ("AA", "UA", "DL", "WN", "B6")
TIMES = {"morning": range(5, 12), "afternoon": range(12, 18), "evening": range(18, 24)}
MONTH = "Feb"
FIRST_NAMES = ("Edward", "Donna", "Stephen", "Emily", "Gary", "Sarah", "Richard", "Nicholas", "Jennifer", "Charles",
               "Susan", "Gregory", "Maria", "Kevin", "Laura", "Anthony")
LAST_NAMES = ("Hall", "Evans", "Taylor", "Edwards", "Johnson", "Wilson", "Perez", "Allen", "Young", "Clark",
              "Lopez", "Baker", "Nguyen", "Carter", "Mitchell", "Roberts")


def time_of_day(hour: int) -> str:
    return next(name for name, hours in TIMES.items() if hour in hours)


ANY = ("any", "all", None)


def meets(flight: dict, intent: dict) -> bool:
    """Whether `flight` satisfies every constraint of `intent` ("any"/"all" leave one open)."""
    return (flight["departure_airport"] == intent["departure_airport"]
            and flight["return_airport"] == intent["return_airport"]
            and flight["departure_day"] == intent["departure_day"]
            and flight["return_day"] == intent["return_day"]
            and flight["price"] <= intent["max_price"]
            and flight["num_connections"] <= intent["max_connections"]
            and (intent.get("class") in ANY or flight["class"] == intent["class"])
            and (intent.get("departure_time") in ANY
                 or time_of_day(flight["departure_time_num"]) == intent["departure_time"]))


def expected_action(kb: list[dict], reservation: bool, intent: dict) -> dict:
    """What the customer's intent calls for, as AirDialogue's `expected_action`: the status, every
    flight tied for the lowest price among those meeting the intent (`flights`, by number; `flight`
    is the first) and the customer's name."""
    goal, flights = intent["goal"], []
    if goal in ("change", "cancel") and not reservation:
        status = "no_reservation"
    elif goal == "cancel":
        status = "cancel"
    else:
        matches = sorted((f for f in kb if meets(f, intent)), key=lambda f: (f["price"], f["flight_number"]))
        status = goal if matches else "no_flight"
        flights = [f["flight_number"] for f in matches if f["price"] == matches[0]["price"]]
    return {"status": status, "flight": flights[0] if flights else None, "flights": flights,
            "name": intent.get("name")}


def correct_action(kb: list[dict], reservation: bool, intent: dict) -> tuple[str, int | None]:
    """(status, flight) of the final action the customer's intent calls for (the lowest-numbered of
    tied flights)."""
    expected = expected_action(kb, reservation, intent)
    return expected["status"], expected["flight"]


def random_flight(rng: random.Random, number: int) -> dict:
    origin, destination = rng.sample(AIRPORTS, 2)
    day = rng.randint(1, 25)
    return {"flight_number": number, "airline": rng.choice(AIRLINES), "price": 50 * rng.randint(2, 16),
            "num_connections": rng.choice((0, 0, 1, 1, 2)), "class": rng.choice(("economy", "economy", "business")),
            "departure_airport": origin, "return_airport": destination, "departure_month": MONTH,
            "departure_day": day, "departure_time_num": rng.randint(5, 23), "return_month": MONTH,
            "return_day": day + rng.randint(1, 3), "return_time_num": rng.randint(5, 23)}


def random_scenario(rng: random.Random, num_flights: int = 30) -> tuple[list[dict], bool, dict]:
    """A flight table, a reservation flag and a customer intent. Tables usually hold a few flights
    close to the intent, some meeting it and some missing one constraint."""
    goal = rng.choices(("book", "change", "cancel"), weights=(6, 2, 2))[0]
    kb = [random_flight(rng, 1000 + i) for i in range(num_flights)]
    anchor = rng.choice(kb)
    intent = {"goal": goal, "departure_airport": anchor["departure_airport"], "return_airport": anchor["return_airport"],
              "departure_day": anchor["departure_day"], "return_day": anchor["return_day"],
              "max_price": anchor["price"] + 50 * rng.randint(0, 4), "max_connections": rng.choice((0, 1, 2)),
              "class": anchor["class"],
              "departure_time": rng.choice(("any", "any", time_of_day(anchor["departure_time_num"])))}
    # near misses and extra matches around the anchor: a sloppy agent that skips a question is caught
    for flight in rng.sample(kb, min(len(kb), max(2, num_flights // 3))):
        if flight is anchor:
            continue
        for key in ("departure_airport", "return_airport", "departure_day", "return_day", "class"):
            flight[key] = intent[key]
        flight["price"] = 50 * rng.randint(2, 16)
    reservation = rng.random() < 0.8
    intent["name"] = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"  # drawn last: the rest is as before
    return kb, reservation, intent


QUESTIONS = {
    "airports": re.compile(r"\b(from|where|airports?|cit(y|ies)|destination|route)\b", re.IGNORECASE),
    "dates": re.compile(r"\b(dates?|when)\b", re.IGNORECASE),
    "price": re.compile(r"\b(budget|price|cost|spend|afford)\b", re.IGNORECASE),
    "stops": re.compile(r"\b(stops?|connections?|nonstop|direct)\b", re.IGNORECASE),
    "time": re.compile(r"\b(time|morning|afternoon|evening)\b", re.IGNORECASE),
    "class": re.compile(r"\b(class|economy|business)\b", re.IGNORECASE),
    "name": re.compile(r"\bname\b", re.IGNORECASE),
}
OPENERS = {"book": "Hi, I'd like to book a round trip.", "change": "Hello, I need to change my reservation.",
           "cancel": "Hi, please cancel my reservation."}


def answer(topic: str, intent: dict) -> str:
    if topic == "airports":
        return f"From {intent['departure_airport']} to {intent['return_airport']}."
    if topic == "dates":
        return f"Leaving {MONTH} {intent['departure_day']}, back {MONTH} {intent['return_day']}."
    if topic == "price":
        return f"My budget is ${intent['max_price']}."
    if topic == "stops":
        return "Nonstop only." if intent["max_connections"] == 0 else f"At most {intent['max_connections']} stops."
    if topic == "time":
        return "Any time is fine." if intent["departure_time"] == "any" else f"I prefer the {intent['departure_time']}."
    if topic == "name":
        return f"My name is {intent['name']}."
    return f"{intent['class'].capitalize()}, please."


class FlightBookingEnv:
    """The agent's side of a booking conversation with a scripted customer.

    Example:
        ```python
        >>> env = FlightBookingEnv(num_flights=8)
        >>> env.reset(seed=0)
        "Hi, I'd like to book a round trip."
        >>> env.step("Where are you flying from and to?")
        ('From DEN to ORD.', 0.0, False, {...})
        ```
    """

    def __init__(self, num_flights: int = 30, max_turns: int = 10, success_rule: str = "official"):
        self.num_flights = num_flights
        self.max_turns = max_turns
        self.success_rule = check_rule(success_rule)
        self.system_prompt = ""

    def reset(self, seed: int | None = None) -> str:
        self.rng = random.Random(seed)
        self.kb, self.reservation, self.intent = random_scenario(self.rng, self.num_flights)
        self.turns = 0
        self.system_prompt = render_context(self.kb, self.reservation, self.success_rule)
        return OPENERS[self.intent["goal"]]

    @property
    def context(self) -> dict:
        return {"kb": self.kb, "reservation": self.reservation}

    def row_fields(self, action: FinalAction | None) -> dict:
        """The episode's structured fields kept with its row, in the AirDialogue converter's shapes (for
        relabelling and the outcome head), given the agent's final action (None without one)."""
        return {"context": self.context, "intent": self.intent, "action": action._asdict() if action else None,
                "expected_action": expected_action(self.kb, self.reservation, self.intent),
                "success_rule": self.success_rule}

    def step(self, text: str) -> tuple[str, float, bool, dict]:
        self.turns += 1
        action = parse_action(text)
        if action is not None:
            expected = expected_action(self.kb, self.reservation, self.intent)
            success = is_success(action._asdict(), expected, self.success_rule)
            info = {"success": success, "action": action, "expected": expected, "invalid": False}
            return "Thank you." if success else "That's not what I wanted.", float(success), True, info
        topics = [topic for topic, pattern in QUESTIONS.items() if pattern.search(text)]
        if self.turns >= self.max_turns:
            return "I have to go.", 0.0, True, {"success": False, "invalid": not topics}
        if not topics:
            return "Sorry, what do you need to know?", 0.0, False, {"invalid": True}
        return " ".join(answer(t, self.intent) for t in topics), 0.0, False, {"invalid": False}


__all__ = ["AIRPORTS", "FlightBookingEnv", "correct_action", "expected_action", "meets", "random_scenario",
           "render_action"]
