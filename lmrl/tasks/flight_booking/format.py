"""The text the flight-booking agent sees and writes, shared by the simulator and the AirDialogue
loader: the flight table and reservation (the context), and the final action.

Flights use AirDialogue's kb fields: flight_number, airline, price, num_connections, class,
departure_airport, return_airport, departure_month, departure_day, departure_time_num,
return_month, return_day, return_time_num.
Final actions (AirDialogue's `status`): book, change (with one flight), cancel, no_flight,
no_reservation, written as e.g. "Final action: book flight 1012." or "Final action: no flight.".
When the success rule needs the customer's name (AirDialogue's official rule), the agent states it
after "for": "Final action: book flight 1012 for Edward Hall.", "Final action: cancel for Edward Hall.".
"""

from __future__ import annotations

import re
from typing import NamedTuple

STATUSES = ("book", "change", "cancel", "no_flight", "no_reservation")
FLIGHT_FIELDS = ("flight_number", "airline", "price", "num_connections", "class", "departure_airport",
                 "return_airport", "departure_month", "departure_day", "departure_time_num", "return_month",
                 "return_day", "return_time_num")

_ACTION = re.compile(r"final action:\s*(book|change|cancel|no flight|no reservation)(?:\s+flight\s+(\d+))?"
                     r"(?:\s+for\s+([^\n.]*[^\s.]))?", re.IGNORECASE)


class FinalAction(NamedTuple):
    """A final action as the agent wrote it: status, flight number (book and change) and name (or None)."""

    status: str
    flight: int | None = None
    name: str | None = None


def render_flight(flight: dict) -> str:
    stops = {0: "nonstop", 1: "1 stop"}.get(flight["num_connections"], f"{flight['num_connections']} stops")
    return (f"{flight['flight_number']}: {flight['airline']}, {flight['departure_airport']}-{flight['return_airport']}, "
            f"out {flight['departure_month']} {flight['departure_day']} {flight['departure_time_num']}h, "
            f"back {flight['return_month']} {flight['return_day']} {flight['return_time_num']}h, {stops}, "
            f"{flight['class']}, ${flight['price']}")


def render_context(kb: list[dict], reservation: bool, success_rule: str = "official") -> str:
    """The agent's system message: its role, the flight table and whether the customer has a
    reservation. Under the official success rule it asks for the customer's name in the action."""
    name = " followed by \"for\" and the customer's name" if success_rule == "official" else ""
    lines = ["You are a flight agent. Find what the customer wants and end with a final action: "
             f"book flight N, change flight N, cancel, no flight, or no reservation{name}.",
             f"Reservation on record: {'yes' if reservation else 'no'}.", "Flights:"]
    lines += [render_flight(f) for f in kb]
    return "\n".join(lines)


def display_name(name: str | None) -> str | None:
    """The name as an action writes it: letters, spaces, hyphens and apostrophes, single-spaced (what
    else a name field holds, such as a final period, would end the action's text early)."""
    kept = "".join(c if c.isalpha() or c in "-'" else " " for c in name or "")
    return " ".join(kept.split()) or None


def render_action(status: str, flight: int | None = None, name: str | None = None) -> str:
    """The agent's final action as text; with `name`, the customer's name follows "for"."""
    if status not in STATUSES:
        raise ValueError(f"Unknown final action {status!r}; use one of {', '.join(STATUSES)}.")
    name = display_name(name)
    to = f" for {name}" if name else ""
    if status in ("book", "change"):
        if flight is None:
            raise ValueError(f"The final action {status!r} needs a flight number.")
        return f"Final action: {status} flight {flight}{to}."
    return f"Final action: {status.replace('_', ' ')}{to}."


def parse_action(text: str) -> FinalAction | None:
    """The final action in `text` (status, flight number or None, name or None), or None if it has none.

    Example:
        >>> parse_action("Done. Final action: book flight 1012 for Edward Hall.")
        FinalAction(status='book', flight=1012, name='Edward Hall')
    """
    match = _ACTION.search(text)
    if not match:
        return None
    status = match.group(1).lower().replace(" ", "_")
    flight = int(match.group(2)) if match.group(2) else None
    if status in ("book", "change") and flight is None:
        return None
    name = display_name(match.group(3))
    return FinalAction(status, flight if status in ("book", "change") else None, name)
