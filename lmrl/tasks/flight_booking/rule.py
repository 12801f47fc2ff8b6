"""When a flight-booking dialogue succeeds: one rule for the simulator, the behaviour data and the
AirDialogue converter.

- `"official"` (default): AirDialogue's own rule (`check_states` in google/airdialogue, also CALM's):
  the status, the flight and the customer's name must all match. Any flight tied for the best
  match counts (`expected["flights"]`); book and change need exactly one flight, every other status
  none; names are compared after AirDialogue's standardization (letters and spaces only, stripped,
  case ignored), so "Edward hall." matches "Edward Hall".
- `"flight_status"`: the status and the flight only, for agents that never write the name (the
  CPU recipes' tiny models, or data whose actions have no name).
"""

from __future__ import annotations

SUCCESS_RULES = ("official", "flight_status")
WITH_FLIGHT = ("book", "change")


def check_rule(success_rule: str) -> str:
    if success_rule not in SUCCESS_RULES:
        raise ValueError(f"Unknown success_rule {success_rule!r}; use 'official' (name, flight and status, as "
                         "AirDialogue scores) or 'flight_status' (for agents that never write the name).")
    return success_rule


def standard_name(name: str | None) -> str:
    """AirDialogue's name standardization: letters and spaces only, stripped, lower case."""
    return "".join(c for c in (name or "").strip() if c.isalpha() or c == " ").strip().lower()


def is_success(action: dict, expected: dict, success_rule: str = "official") -> bool:
    """Whether `action` ({"status", "flight", "name"}) is right for `expected` ({"status", "flights"
    (every flight tied for the best match), "name"}) under `success_rule`.

    Example:
        >>> expected = {"status": "book", "flights": [1006, 1017], "name": "Stephen Evans"}
        >>> is_success({"status": "book", "flight": 1017, "name": "stephen evans."}, expected)
        True
        >>> is_success({"status": "book", "flight": 1017, "name": "Steven Evans"}, expected)
        False
        >>> is_success({"status": "book", "flight": 1017, "name": None}, expected, "flight_status")
        True
    """
    status, flight = action["status"], action.get("flight")
    if status != expected["status"]:
        return False
    flights = expected.get("flights") or []
    if status in WITH_FLIGHT:
        if flight is None or flight not in flights:
            return False
    elif flights:  # an action without a flight is right only when no flight is expected
        return False
    if check_rule(success_rule) == "flight_status":
        return True
    return standard_name(action.get("name")) == standard_name(expected.get("name"))
