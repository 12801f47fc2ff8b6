"""The customer's side of flight booking, played by a person against the trained agent (`lmrl play`).

The flight table, the reservation and the customer's trip are drawn as the simulator draws them
(`FlightBookingEnv.reset`); the person is told the trip and answers the agent's questions in their
own words. The agent's replies go through the simulator's `step`, so the task's own rule scores the
final action (and the customer runs out of patience after the same number of turns).
"""

from __future__ import annotations

from lmrl.envs.human import require_text

from .env import MONTH, FlightBookingEnv, expected_action
from .format import render_action

GOALS = {"book": "Book a round trip", "change": "Change your reservation to a round trip",
         "cancel": "Cancel your reservation"}


def describe_trip(intent: dict) -> str:
    """The customer's goal and constraints in words, for the person who plays the customer."""
    lines = [f"Your name: {intent['name']}.", f"{GOALS[intent['goal']]}."]
    if intent["goal"] != "cancel":
        stops = "nonstop only" if intent["max_connections"] == 0 else f"at most {intent['max_connections']} stop(s)"
        time = intent["departure_time"] if intent["departure_time"] not in ("any", None) else "any time"
        lines.append(f"From {intent['departure_airport']} to {intent['return_airport']}, leaving {MONTH} "
                     f"{intent['departure_day']} ({time}), back {MONTH} {intent['return_day']}; {stops}, "
                     f"{intent['class']} class, a budget of ${intent['max_price']}.")
    return " ".join(lines)


def _action_text(status: str, flight: int | None = None, name: str | None = None) -> str:
    """A final action in words: "book flight 1012 for Edward Hall"."""
    return render_action(status, flight, name).removeprefix("Final action: ").rstrip(".")


class HumanCustomer:
    """A person as the customer; the agent has the flight table and must end with the right final action.

    Example:
        ```python
        >>> customer = HumanCustomer(num_flights=4, success_rule="flight_status")
        >>> print(customer.reset(seed=0))  # doctest: +ELLIPSIS
        You are the customer. Your name: Susan Allen. Cancel your reservation.
        Tell the agent what you want ...
        >>> customer.hear("Hi, I'd like to book a round trip.")
        (0.0, False, {})
        >>> customer.step("Where are you flying from and to?")[:2]
        (0.0, False)
        ```
    """

    def __init__(self, num_flights: int = 30, success_rule: str = "official", max_turns: int = 10):
        self.env = FlightBookingEnv(num_flights, max_turns, success_rule)
        self.system_prompt = ""

    def reset(self, seed: int | None = None) -> str:
        opener = self.env.reset(seed)
        self.system_prompt = self.env.system_prompt
        self.action = None
        name = ", and your name when asked" if self.env.success_rule == "official" else ""
        return (f"You are the customer. {describe_trip(self.env.intent)}\nTell the agent what you want (e.g. "
                f"\"{opener}\") and answer its questions{name}.\nThe episode ends when the agent takes its final "
                "action (books, changes or cancels a flight, or says there is no flight or no reservation). It "
                "scores 1 when that action is right for your trip, and 0 when it is wrong or never comes.")

    def hear(self, text: str) -> tuple[float, bool, dict]:
        require_text(text)
        return 0.0, False, {}

    def step(self, reply: str) -> tuple[float, bool, dict]:
        _, reward, done, info = self.env.step(reply)  # the simulated customer's answer is not used
        if not done:
            return reward, done, info
        self.action = info.get("action")
        expected = expected_action(self.env.kb, self.env.reservation, self.env.intent)
        right = _action_text(expected["status"], expected["flight"])
        if self.action is None:
            summary = f"The agent ran out of turns without a final action (right: {right}). It scores 0."
        else:
            verdict = "right" if info["success"] else f"wrong; right: {right}"
            summary = f"The agent's final action: {_action_text(*self.action)} ({verdict}). It scores {reward:g}."
        return reward, done, {**info, "summary": summary}

    def row_fields(self) -> dict:
        return self.env.row_fields(self.action)
