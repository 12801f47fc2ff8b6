"""Task relabelling (CALM): rewrite the context of a failed dialogue so that what the agent did
becomes the correct action, and keep the customer's intent and every word of the dialogue.

- book/change flight N: flight N is rewritten to meet every constraint, and any cheaper matching
  flight (or an equally cheap one with a lower number) is made dearer, so N is the cheapest match;
  change also needs a reservation on record.
- no flight: every flight that meets the intent gets a price above the customer's cap.
- cancel / no reservation: the reservation flag is set / cleared.
A dialogue whose action contradicts the customer's goal (booking when they asked to cancel) has no
such context and is left out (`relabel_context` returns None); so is one scored by AirDialogue's
official rule whose action has the wrong name (or none): the name is the customer's, said in the
dialogue, and no table makes it right.
"""

from __future__ import annotations

import copy

from .env import ANY, TIMES, expected_action, meets
from .format import render_context
from .rule import standard_name


def relabel_context(kb: list[dict], reservation: bool, intent: dict, action: dict | None
                    ) -> tuple[list[dict], bool] | None:
    """A (table, reservation) for which `action` is correct for `intent`, or None if none exists."""
    if action is None:
        return None
    status, number, goal = action["status"], action.get("flight"), intent["goal"]
    kb = copy.deepcopy(kb)
    if status == "no_reservation":
        return (kb, False) if goal in ("change", "cancel") else None
    if status == "cancel":
        return (kb, True) if goal == "cancel" else None
    if goal == "cancel" or (status in ("book", "change") and status != goal):
        return None
    reservation = True if goal == "change" else reservation
    if status == "no_flight":
        for flight in kb:
            if meets(flight, intent):
                flight["price"] = intent["max_price"] + 50
        return kb, reservation
    chosen = next((f for f in kb if f["flight_number"] == number), None)
    if chosen is None:
        return None
    for key in ("departure_airport", "return_airport", "departure_day", "return_day", "class"):
        if intent.get(key) not in ANY:
            chosen[key] = intent[key]
    chosen["price"] = min(chosen["price"], intent["max_price"])
    chosen["num_connections"] = min(chosen["num_connections"], intent["max_connections"])
    if intent.get("departure_time") in TIMES and chosen["departure_time_num"] not in TIMES[intent["departure_time"]]:
        chosen["departure_time_num"] = TIMES[intent["departure_time"]][0]
    for flight in kb:
        if flight is not chosen and meets(flight, intent) and (flight["price"], flight["flight_number"]) < (
                chosen["price"], chosen["flight_number"]):
            flight["price"] = chosen["price"] + 50
    return kb, reservation


def relabel_row(row: dict) -> dict | None:
    """A failed row rewritten to succeed: new context, its rendering in the system message, reward 1
    on the final action. Rows that already succeed come back unchanged; None if it cannot be done."""
    action, intent = row.get("action"), row["intent"]
    rewards = [m.get("reward") or 0.0 for m in row["messages"] if m["role"] == "assistant"]
    if rewards and rewards[-1] >= 1.0:  # already successful
        return row
    # rows made before the rule existed (no `success_rule`) were scored on flight and status
    rule = row.get("success_rule", "flight_status")
    if rule == "official" and (
            action is None or standard_name(action.get("name")) != standard_name(intent.get("name"))):
        return None
    relabelled = relabel_context(row["context"]["kb"], row["context"]["reservation"], intent, action)
    if relabelled is None:
        return None
    kb, reservation = relabelled
    expected = expected_action(kb, reservation, intent)
    if (expected["status"], expected["flight"]) != (action["status"], action.get("flight")):  # a bug here must never train silently
        raise AssertionError(f"relabelling produced {expected} instead of {action}")
    messages = copy.deepcopy(row["messages"])
    system = next(m for m in messages if m["role"] == "system")
    system["content"] = render_context(kb, reservation, rule)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages[last]["reward"] = 1.0
    return {**row, "messages": messages, "context": {"kb": kb, "reservation": reservation},
            "expected_action": expected, "relabelled": True}
