"""Load the AirDialogue corpus (Wei et al. 2018, google/airdialogue; used by CALM, Snell et al. 2022)
as lmrl training rows, from the agent's point of view.

AirDialogue comes as two JSON-lines files aligned line by line: a data file (`train_data.json`:
`intent`, `action`, `expected_action`, `dialogue`, `timestamps`) and a kb file (`train_kb.json`:
`kb`, the flight table, and `reservation`). Line N of the data file and line N of the kb file make
one row (the row format of docs/design.md, section 1):

    {"messages": [{"role": "system", "content": <flight table and reservation>},
                  {"role": "user", "content": <customer's turn>},
                  {"role": "assistant", "content": <agent's turn>, "reward": 0.0}, ...,
                  {"role": "assistant", "content": "Final action: book flight 1001.", "reward": 1.0}],
     "done": true,
     "context": {"kb": [<flights as in the kb file>], "reservation": true},
     "intent": {<the customer's intent as in the data file>},
     "action": {"status": "book", "flight": 1001},
     "expected_action": {"status": "book", "flight": 1001, "flights": [1001]}}

Mapping:
- the system message is `render_context(kb, reservation)`. AirDialogue's `reservation` is 0 when
  the customer has none and otherwise the reserved flight's number; true/false and 1 are accepted too;
- each turn "customer: text" becomes a `user` message and "agent: text" an `assistant` message (the
  speaker is what comes before the first ":"; the text is stripped). Consecutive turns of one speaker
  merge into one message, joined by a single space; empty texts are dropped (and do not split a
  merged message);
- the agent's recorded `action` is appended as its own final assistant message,
  `render_action(status, flight)`, even right after an agent turn.

Reward (on the final action message; every other assistant message gets 0.0): 1.0 when `action`
matches `expected_action` (same status and, for book and change, a flight among the expected ones),
else 0.0. `expected_action.flight` lists every flight tied for the best match (any of them is
correct, as in AirDialogue's own evaluator); the row keeps them in `expected_action["flights"]` and
the first in `expected_action["flight"]`. Names are not compared: the agent's action text has none.
Malformed input raises `ValueError` naming the file, the line (1-based) and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

from .format import FLIGHT_FIELDS, STATUSES, render_action, render_context

SPEAKERS = {"customer": "user", "agent": "assistant"}
WITH_FLIGHT = ("book", "change")
LINE_FIX = "Fix or remove this line, and the same line of the other file."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


class _Line:
    """Where we are in the files, to build error messages that name the file, line and field."""

    def __init__(self, path: Path, number: int):
        self.path, self.number = path, number

    def error(self, field: str, problem: str, fix: str = LINE_FIX) -> ValueError:
        return ValueError(f"{self.path}: line {self.number}: field '{field}' {problem}. {fix}")


def _read_lines(path: Path, kind: str) -> list[str]:
    """The non-blank lines of a JSON-lines file; empty lines at the end are fine, blank ones before are not."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file. Pass the path of an AirDialogue {kind} file "
                         f"(e.g. train_{kind}.json from google/airdialogue's data release).")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error}). Pass an AirDialogue {kind} file.") from error
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{path}: line {number} is blank. Remove it: every line holds one JSON object, and "
                             "line N of the data file must belong to line N of the kb file.")
    return lines


def _parse(line: str, at: _Line, keys: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{at.path}: line {at.number}: invalid JSON at column {error.colno}: {error.msg}. "
                         "Fix the line or download the file again.") from error
    if not isinstance(record, dict):
        raise ValueError(f"{at.path}: line {at.number}: must be a JSON object with {keys}, "
                         f"got {_describe(record)}. {LINE_FIX}")
    return record


def _kb(record: dict, at: _Line) -> tuple[list[dict], bool]:
    """The flight table and whether the customer has a reservation."""
    kb = record.get("kb")
    if not isinstance(kb, list):
        raise at.error("kb", f"must be a list of flights, got {_describe(kb)}")
    for i, flight in enumerate(kb):
        if not isinstance(flight, dict):
            raise at.error(f"kb[{i}]", f"must be a flight object, got {_describe(flight)}",
                           f"Each flight needs {', '.join(FLIGHT_FIELDS)}.")
        for name in FLIGHT_FIELDS:
            if name not in flight:
                raise at.error(f"kb[{i}].{name}", "is missing", f"Each flight needs {', '.join(FLIGHT_FIELDS)}.")
        if not _is_int(flight["flight_number"]):
            raise at.error(f"kb[{i}].flight_number", f"must be an integer, got {_describe(flight['flight_number'])}")
    reservation = record.get("reservation")
    if isinstance(reservation, bool) or (_is_int(reservation) and reservation >= 0):
        return kb, bool(reservation)
    raise at.error("reservation", f"must be 0 or false (no reservation), or 1, true or the reserved flight's "
                                  f"number, got {_describe(reservation)}")


def _turns(record: dict, at: _Line) -> list[tuple[str, list[str]]]:
    """(role, texts) of each message, consecutive turns of one speaker merged."""
    dialogue = record.get("dialogue")
    if not isinstance(dialogue, list):
        raise at.error("dialogue", f"must be a list of turns like 'customer: Hello.', got {_describe(dialogue)}")
    turns: list[tuple[str, list[str]]] = []
    for i, turn in enumerate(dialogue):
        if not isinstance(turn, str):
            raise at.error(f"dialogue[{i}]", f"must be a string like 'customer: Hello.', got {_describe(turn)}")
        speaker, colon, text = turn.partition(":")
        role = SPEAKERS.get(speaker.strip().lower()) if colon else None
        if role is None:
            raise at.error(f"dialogue[{i}]", f"is {_describe(turn)}, which does not start with 'customer:' or "
                                             "'agent:'", "Prefix the turn with its speaker, or remove the turn.")
        text = text.strip()
        if not text:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].append(text)
        else:
            turns.append((role, [text]))
    return turns


def _action(record: dict, name: str, at: _Line) -> tuple[str, list[int]]:
    """(status, flights) of `action` (at most one flight) or `expected_action` (the acceptable flights)."""
    action = record.get(name)
    if not isinstance(action, dict):
        raise at.error(name, f"must be an object with 'status' and 'flight', got {_describe(action)}")
    status = action.get("status")
    if status not in STATUSES:
        problem = "is missing" if status is None else f"is {_describe(status)}, an unknown status"
        raise at.error(f"{name}.status", problem, f"Use one of {', '.join(STATUSES)}.")
    flights = action.get("flight", [])
    if not isinstance(flights, list) or not all(_is_int(flight) for flight in flights):
        raise at.error(f"{name}.flight", f"must be a list of flight numbers (integers), got {_describe(flights)}")
    if status not in WITH_FLIGHT:
        return status, []
    if not flights:
        raise at.error(f"{name}.flight", f"is empty, but the status {status!r} needs a flight number",
                       f"Give the flight, e.g. [1001], or fix the status. {LINE_FIX}")
    if name == "action" and len(flights) > 1:
        raise at.error(f"{name}.flight", f"lists {len(flights)} flights, but the agent books one",
                       f"Keep only the flight the agent chose. {LINE_FIX}")
    return status, flights


def _convert(data: dict, kb_record: dict, data_at: _Line, kb_at: _Line) -> dict:
    kb, reservation = _kb(kb_record, kb_at)
    intent = data.get("intent")
    if not isinstance(intent, dict):
        raise data_at.error("intent", f"must be an object (the customer's goal), got {_describe(intent)}")
    turns = _turns(data, data_at)
    status, flights = _action(data, "action", data_at)
    expected_status, expected_flights = _action(data, "expected_action", data_at)
    flight = flights[0] if flights else None
    correct = status == expected_status and (status not in WITH_FLIGHT or flight in expected_flights)

    messages = [{"role": "system", "content": render_context(kb, reservation)}]
    for role, texts in turns:
        message = {"role": role, "content": " ".join(texts)}
        if role == "assistant":
            message["reward"] = 0.0
        messages.append(message)
    messages.append({"role": "assistant", "content": render_action(status, flight), "reward": 1.0 if correct else 0.0})
    return {
        "messages": messages,
        "done": True,
        "context": {"kb": kb, "reservation": reservation},
        "intent": intent,
        "action": {"status": status, "flight": flight},
        "expected_action": {"status": expected_status, "flight": expected_flights[0] if expected_flights else None,
                            "flights": expected_flights},
    }


def load_airdialogue(data_path: str | Path, kb_path: str | Path) -> list[dict]:
    """Rows (agent's view) from an AirDialogue data file and its kb file, e.g. `train_data.json` and
    `train_kb.json`.

    The customer's turns are `user` messages and the agent's `assistant` messages, after a system
    message with the flight table; the agent's recorded action closes the row as its own assistant
    message, which earns 1.0 when it matches `expected_action` and 0.0 otherwise.

    Example:
        >>> rows = load_airdialogue("airdialogue/train_data.json", "airdialogue/train_kb.json")  # doctest: +SKIP
        >>> rows[0]["messages"][-1]  # doctest: +SKIP
        {'role': 'assistant', 'content': 'Final action: book flight 1001.', 'reward': 1.0}

    Raises:
        ValueError: a file is missing or not JSON lines, the two files differ in length, or a line is
            malformed; the message names the file, the line (1-based) and the field.
    """
    data_path, kb_path = Path(data_path), Path(kb_path)
    data_lines = _read_lines(data_path, "data")
    kb_lines = _read_lines(kb_path, "kb")
    if len(data_lines) != len(kb_lines):
        raise ValueError(f"{data_path} has {len(data_lines)} lines but {kb_path} has {len(kb_lines)}; line N of the "
                         "data file must belong to line N of the kb file. Pass a matching pair (e.g. train_data.json "
                         "with train_kb.json).")
    rows = []
    for number, (data_line, kb_line) in enumerate(zip(data_lines, kb_lines), 1):
        data_at, kb_at = _Line(data_path, number), _Line(kb_path, number)
        data = _parse(data_line, data_at, "'intent', 'action', 'expected_action' and 'dialogue'")
        kb_record = _parse(kb_line, kb_at, "'kb' and 'reservation'")
        rows.append(_convert(data, kb_record, data_at, kb_at))
    return rows
