"""The text the flight-booking agent sees and writes, shared by the simulator and the AirDialogue
loader: the flight table and reservation (the context), and the final action.

Flights use AirDialogue's kb fields: flight_number, airline, price, num_connections, class,
departure_airport, return_airport, departure_month, departure_day, departure_time_num,
return_month, return_day, return_time_num.
Final actions (AirDialogue's `status`): book, change (with one flight), cancel, no_flight,
no_reservation, written as e.g. "Final action: book flight 1012." or "Final action: no flight.".
"""

from __future__ import annotations

import re

STATUSES = ("book", "change", "cancel", "no_flight", "no_reservation")
FLIGHT_FIELDS = ("flight_number", "airline", "price", "num_connections", "class", "departure_airport",
                 "return_airport", "departure_month", "departure_day", "departure_time_num", "return_month",
                 "return_day", "return_time_num")

_ACTION = re.compile(r"final action:\s*(book|change|cancel|no flight|no reservation)(?:\s+flight\s+(\d+))?",
                     re.IGNORECASE)


def render_flight(flight: dict) -> str:
    stops = {0: "nonstop", 1: "1 stop"}.get(flight["num_connections"], f"{flight['num_connections']} stops")
    return (f"{flight['flight_number']}: {flight['airline']}, {flight['departure_airport']}-{flight['return_airport']}, "
            f"out {flight['departure_month']} {flight['departure_day']} {flight['departure_time_num']}h, "
            f"back {flight['return_month']} {flight['return_day']} {flight['return_time_num']}h, {stops}, "
            f"{flight['class']}, ${flight['price']}")


def render_context(kb: list[dict], reservation: bool) -> str:
    """The agent's system message: its role, the flight table and whether the customer has a reservation."""
    lines = ["You are a flight agent. Find what the customer wants and end with a final action: "
             "book flight N, change flight N, cancel, no flight, or no reservation.",
             f"Reservation on record: {'yes' if reservation else 'no'}.", "Flights:"]
    lines += [render_flight(f) for f in kb]
    return "\n".join(lines)


def render_action(status: str, flight: int | None = None) -> str:
    if status not in STATUSES:
        raise ValueError(f"Unknown final action {status!r}; use one of {', '.join(STATUSES)}.")
    if status in ("book", "change"):
        if flight is None:
            raise ValueError(f"The final action {status!r} needs a flight number.")
        return f"Final action: {status} flight {flight}."
    return f"Final action: {status.replace('_', ' ')}."


def parse_action(text: str) -> tuple[str, int | None] | None:
    """(status, flight number or None) of a final action in `text`, or None if it has none."""
    match = _ACTION.search(text)
    if not match:
        return None
    status = match.group(1).lower().replace(" ", "_")
    flight = int(match.group(2)) if match.group(2) else None
    if status in ("book", "change") and flight is None:
        return None
    return status, flight if status in ("book", "change") else None
