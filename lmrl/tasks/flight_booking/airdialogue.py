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
     "action": {"status": "book", "flight": 1001, "name": "Jennifer Young"},
     "expected_action": {"status": "book", "flight": 1001, "flights": [1001], "name": "Jennifer Young"},
     "success_rule": "official"}

Mapping:
- the system message is `render_context(kb, reservation, success_rule)`. AirDialogue's `reservation` is 0 when
  the customer has none and otherwise the reserved flight's number; true/false and 1 are accepted too;
- each turn "customer: text" becomes a `user` message and "agent: text" an `assistant` message (the
  speaker is what comes before the first ":"; the text is stripped). Consecutive turns of one speaker
  merge into one message, joined by a single space; empty texts are dropped (and do not split a
  merged message);
- the agent's recorded `action` is appended as its own final assistant message,
  `render_action(status, flight, name)`, even right after an agent turn ("Final action: book flight
  1001 for Jennifer Young."); under `success_rule="flight_status"` the name is left out of the text.

Reward (on the final action message; every other assistant message gets 0.0): 1.0 when `action`
succeeds for `expected_action` under `success_rule` (`rule.is_success`), else 0.0. By default that is
AirDialogue's official rule: same status, a flight among the expected ones for book and change
(`expected_action.flight` lists every flight tied for the best match), and the same name after
AirDialogue's standardization (letters and spaces, case ignored). `"flight_status"` drops the name.
The row keeps the tied flights in `expected_action["flights"]` and the first in `["flight"]`.

Both files are read one line at a time (plain or .gz) and rows are yielded as they are made, so memory
does not grow with the file. A malformed line raises `CorpusError` (a `ValueError`) naming the file,
the line (1-based) and the field; given `on_error`, the error goes there instead and the next line
is converted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from itertools import zip_longest
from pathlib import Path

from lmrl.data import strict_json
from lmrl.data.corpus import CorpusError, field_pattern, open_binary

from .format import FLIGHT_FIELDS, STATUSES, render_action, render_context
from .rule import WITH_FLIGHT, check_rule, is_success

SPEAKERS = {"customer": "user", "agent": "assistant"}
LINE_FIX = "Fix or remove this line, and the same line of the other file."
INT_FIELDS = ("flight_number", "price", "num_connections", "departure_time_num", "return_time_num")
INTENT_FIELDS = ("departure_airport", "return_airport", "departure_month", "return_month", "departure_day",
                 "return_day", "departure_time", "return_time", "class", "max_price", "max_connections",
                 "airline_preference", "goal", "name")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


class _Line:
    """Where we are in the files, to build errors that name the file, line and field (and carry both
    raw lines for the side file of rejected lines)."""

    def __init__(self, path: Path, number: int, record: dict):
        self.path, self.number, self.record = path, number, record

    def error(self, field: str | None, problem: str, fix: str = LINE_FIX, reason: str | None = None) -> CorpusError:
        """`reason` is the kind of problem without this line's values (defaults to `problem`)."""
        where = f"field '{field}' " if field else ""
        kind = f"{where}{reason or problem}"
        return CorpusError(f"{self.path}: line {self.number}: {where}{problem}. {fix}", path=self.path,
                           where=f"line {self.number}", field=field,
                           reason=field_pattern(kind), record=self.record)


def _parse(line: str, at: _Line, keys: str) -> dict:
    try:
        record = strict_json.loads(line)
    except json.JSONDecodeError as error:
        raise at.error(None, f"invalid JSON at column {error.colno}: {error.msg}", "Fix the line or download the "
                       "file again.", reason="invalid JSON") from None
    except strict_json.StrictJSONError as error:  # NaN, 1e400, a key given twice
        raise at.error(error.field or None, error.problem, error.fix, reason=error.reason) from None
    if not isinstance(record, dict):
        raise at.error(None, f"must be a JSON object with {keys}, got {_describe(record)}",
                       reason="not a JSON object")
    return record


def _kb(record: dict, at: _Line) -> tuple[list[dict], bool]:
    """The flight table and whether the customer has a reservation."""
    kb = record.get("kb")
    if not isinstance(kb, list):
        raise at.error("kb", f"must be a list of flights, got {_describe(kb)}", reason="must be a list of flights")
    fields = f"Each flight needs {', '.join(FLIGHT_FIELDS)}; {', '.join(INT_FIELDS)} are integers, the others text."
    for i, flight in enumerate(kb):
        if not isinstance(flight, dict):
            raise at.error(f"kb[{i}]", f"must be a flight object, got {_describe(flight)}", fields,
                           reason="must be a flight object")
        for name in FLIGHT_FIELDS:
            if name not in flight:
                raise at.error(f"kb[{i}].{name}", "is missing", fields)
            value = flight[name]
            if name in INT_FIELDS and not _is_int(value):
                raise at.error(f"kb[{i}].{name}", f"must be an integer, got {_describe(value)}", fields,
                               reason="must be an integer")
            if name not in INT_FIELDS and not isinstance(value, str):
                raise at.error(f"kb[{i}].{name}", f"must be text, got {_describe(value)}", fields,
                               reason="must be text")
    reservation = record.get("reservation")
    if isinstance(reservation, bool) or (_is_int(reservation) and reservation >= 0):
        return kb, bool(reservation)
    raise at.error("reservation", f"must be 0 or false (no reservation), or 1, true or the reserved flight's "
                                  f"number, got {_describe(reservation)}", reason="is not 0, 1, true, false or a "
                                  "flight number")


def _turns(record: dict, at: _Line) -> list[tuple[str, list[str]]]:
    """(role, texts) of each message, consecutive turns of one speaker merged."""
    dialogue = record.get("dialogue")
    if not isinstance(dialogue, list):
        raise at.error("dialogue", f"must be a list of turns like 'customer: Hello.', got {_describe(dialogue)}",
                       reason="must be a list of turns")
    turns: list[tuple[str, list[str]]] = []
    for i, turn in enumerate(dialogue):
        if not isinstance(turn, str):
            raise at.error(f"dialogue[{i}]", f"must be a string like 'customer: Hello.', got {_describe(turn)}",
                           reason="must be a string")
        speaker, colon, text = turn.partition(":")
        role = SPEAKERS.get(speaker.strip().lower()) if colon else None
        if role is None:
            raise at.error(f"dialogue[{i}]", f"is {_describe(turn)}, which does not start with 'customer:' or "
                                             "'agent:'", "Prefix the turn with its speaker, or remove the turn.",
                           reason="does not start with 'customer:' or 'agent:'")
        text = text.strip()
        if not text:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].append(text)
        else:
            turns.append((role, [text]))
    return turns


def _action(record: dict, name: str, at: _Line, needs_name: bool) -> tuple[str, list[int], str | None]:
    """(status, flights, customer name) of `action` (at most one flight) or `expected_action` (the
    acceptable flights)."""
    action = record.get(name)
    if not isinstance(action, dict):
        raise at.error(name, f"must be an object with 'status', 'flight' and 'name', got {_describe(action)}",
                       reason="must be an object")
    status = action.get("status")
    if status not in STATUSES:
        problem = "is missing" if status is None else f"is {_describe(status)}, an unknown status"
        raise at.error(f"{name}.status", problem, f"Use one of {', '.join(STATUSES)}.",
                       reason="is missing" if status is None else "is an unknown status")
    flights = action.get("flight", [])
    if not isinstance(flights, list) or not all(_is_int(flight) for flight in flights):
        raise at.error(f"{name}.flight", f"must be a list of flight numbers (integers), got {_describe(flights)}",
                       reason="must be a list of flight numbers")
    customer = action.get("name")
    if needs_name and not isinstance(customer, str):
        raise at.error(f"{name}.name", f"must be the customer's name (text), got {_describe(customer)}",
                       "Give the name, or convert with --option success_rule=flight_status, which does not "
                       f"compare names. {LINE_FIX}", reason="must be the customer's name (text)")
    customer = customer if isinstance(customer, str) else None
    if status not in WITH_FLIGHT:
        return status, [], customer
    if not flights:
        raise at.error(f"{name}.flight", f"is empty, but the status {status!r} needs a flight number",
                       f"Give the flight, e.g. [1001], or fix the status. {LINE_FIX}",
                       reason="is empty, but book and change need a flight number")
    if name == "action" and len(flights) > 1:
        raise at.error(f"{name}.flight", f"lists {len(flights)} flights, but the agent books one",
                       f"Keep only the flight the agent chose. {LINE_FIX}", reason="lists several flights")
    return status, flights, customer


def _convert(data: dict, kb_record: dict, data_at: _Line, kb_at: _Line, success_rule: str) -> dict:
    kb, reservation = _kb(kb_record, kb_at)
    intent = data.get("intent")
    if not isinstance(intent, dict):
        raise data_at.error("intent", f"must be an object (the customer's goal), got {_describe(intent)}",
                            reason="must be an object")
    turns = _turns(data, data_at)
    needs_name = success_rule == "official"
    status, flights, name = _action(data, "action", data_at, needs_name)
    expected_status, expected_flights, expected_name = _action(data, "expected_action", data_at, needs_name)
    action = {"status": status, "flight": flights[0] if flights else None, "name": name}
    expected = {"status": expected_status, "flight": expected_flights[0] if expected_flights else None,
                "flights": expected_flights, "name": expected_name}
    correct = is_success(action, expected, success_rule)

    messages = [{"role": "system", "content": render_context(kb, reservation, success_rule)}]
    for role, texts in turns:
        message = {"role": role, "content": " ".join(texts)}
        if role == "assistant":
            message["reward"] = 0.0
        messages.append(message)
    text = render_action(status, action["flight"], name if needs_name else None)
    messages.append({"role": "assistant", "content": text, "reward": 1.0 if correct else 0.0})
    return {"messages": messages, "done": True, "context": {"kb": kb, "reservation": reservation},
            "intent": intent, "action": action, "expected_action": expected, "success_rule": success_rule}


def _lines(path: Path, kind: str) -> Iterator[tuple[str | None, str]]:
    """(text, or None when the line is not UTF-8; the text with undecodable bytes replaced, for the
    error and the side file) of each line."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file. Pass the path of an AirDialogue {kind} file "
                         f"(e.g. train_{kind}.json from google/airdialogue's data release).")
    with open_binary(path) as handle:
        for raw in handle:
            shown = raw.decode("utf-8", "replace").rstrip("\r\n")
            try:
                yield raw.decode("utf-8").rstrip("\r\n"), shown
            except UnicodeDecodeError:
                yield None, shown


def iter_airdialogue(data_path: str | Path, kb_path: str | Path, success_rule: str = "official",
                     on_error: Callable[[CorpusError], None] | None = None) -> Iterator[dict]:
    """Rows (agent's view), one at a time, from an AirDialogue data file and its kb file, e.g.
    `train_data.json` and `train_kb.json` (or their .gz), read line by line in step.

    The customer's turns are `user` messages and the agent's `assistant` messages, after a system
    message with the flight table; the agent's recorded action closes the row as its own assistant
    message, which earns 1.0 when it succeeds under `success_rule` ("official": status, flight and
    name, as AirDialogue scores; "flight_status": no name) and 0.0 otherwise.

    Example:
        >>> rows = iter_airdialogue("airdialogue/train_data.json", "airdialogue/train_kb.json")  # doctest: +SKIP
        >>> next(rows)["messages"][-1]  # doctest: +SKIP
        {'role': 'assistant', 'content': 'Final action: book flight 1001 for Jennifer Young.', 'reward': 1.0}

    Raises:
        ValueError: a file is missing or the two differ in length (always); `CorpusError`, a
            `ValueError` naming the file, the line (1-based) and the field, for a malformed line,
            unless `on_error` is given: then it receives the error and the line is left out.
    """
    data_path, kb_path = Path(data_path), Path(kb_path)
    check_rule(success_rule)
    pending: list[int] = []  # numbers of blank lines: fine at the end, not before another line
    lengths = [0, 0]  # lines up to the last non-blank one, per file
    for number, (data_line, kb_line) in enumerate(zip_longest(_lines(data_path, "data"), _lines(kb_path, "kb")), 1):
        texts = [line[0] if line else "" for line in (data_line, kb_line)]
        for i, (line, text) in enumerate(zip((data_line, kb_line), texts)):
            if line is not None and (text is None or text.strip()):
                lengths[i] = number
        if lengths[0] != lengths[1] and (data_line is None or kb_line is None):
            continue  # one file has ended: count the other's lines for the error below
        if not any(text is None or text.strip() for text in texts):
            pending.append(number)
            continue
        record = {"data_line": data_line[1] if data_line else "", "kb_line": kb_line[1] if kb_line else ""}
        for blank in pending:  # blank lines followed by more lines: each is a line of the pair that is missing
            _reject(_Line(data_path, blank, {"data_line": "", "kb_line": ""}).error(
                None, "is blank in both files", "Remove it from both files: line N of the data file must belong "
                "to line N of the kb file.", reason="blank line"), on_error)
        pending = []
        try:
            yield _convert_pair(data_path, kb_path, number, data_line, kb_line, record, success_rule)
        except CorpusError as error:
            _reject(error, on_error)
    if lengths[0] != lengths[1]:
        raise ValueError(f"{data_path} has {lengths[0]} lines but {kb_path} has {lengths[1]}; line N of the "
                         "data file must belong to line N of the kb file. Pass a matching pair (e.g. train_data.json "
                         "with train_kb.json).")


def _convert_pair(data_path: Path, kb_path: Path, number: int, data_line: tuple, kb_line: tuple, record: dict,
                  success_rule: str) -> dict:
    data_at, kb_at = _Line(data_path, number, record), _Line(kb_path, number, record)
    for at, (text, _) in ((data_at, data_line), (kb_at, kb_line)):
        if text is None:
            raise at.error(None, "is not UTF-8 text", "Fix the line's encoding or download the file again.",
                           reason="not UTF-8")
        if not text.strip():
            raise at.error(None, "is blank but the same line of the other file is not",
                           "Line N of the data file must belong to line N of the kb file: remove the line from "
                           "both files, or restore it.", reason="blank line")
    data = _parse(data_line[0], data_at, "'intent', 'action', 'expected_action' and 'dialogue'")
    kb_record = _parse(kb_line[0], kb_at, "'kb' and 'reservation'")
    return _convert(data, kb_record, data_at, kb_at, success_rule)


def _reject(error: CorpusError, on_error: Callable[[CorpusError], None] | None) -> None:
    if on_error is None:
        raise error
    on_error(error)


def row_schema():
    """The pyarrow schema of the rows, for Parquet output (intent fields an intent lacks are null)."""
    import pyarrow as pa

    flight = pa.struct([(name, pa.int64() if name in INT_FIELDS else pa.string()) for name in FLIGHT_FIELDS])
    intent = pa.struct([(name, pa.int64() if name in ("max_price", "max_connections") else pa.string())
                        for name in INTENT_FIELDS])
    action = [("status", pa.string()), ("flight", pa.int64()), ("name", pa.string())]
    return pa.schema([
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("reward", pa.float64())]))),
        ("done", pa.bool_()),
        ("context", pa.struct([("kb", pa.list_(flight)), ("reservation", pa.bool_())])),
        ("intent", intent),
        ("action", pa.struct(action)),
        ("expected_action", pa.struct([*action[:2], ("flights", pa.list_(pa.int64())), action[2]])),
        ("success_rule", pa.string()),
    ])


def load_airdialogue(data_path: str | Path, kb_path: str | Path, success_rule: str = "official") -> list[dict]:
    """Every row of `iter_airdialogue(data_path, kb_path, success_rule)` in a list, stopping at the
    first malformed line (for small files; convert big ones with `lmrl convert flight_booking`).

    Example:
        >>> rows = load_airdialogue("airdialogue/dev_data.json", "airdialogue/dev_kb.json")  # doctest: +SKIP
        >>> rows[0]["action"]  # doctest: +SKIP
        {'status': 'book', 'flight': 1001, 'name': 'Jennifer Young'}
    """
    return list(iter_airdialogue(data_path, kb_path, success_rule))
