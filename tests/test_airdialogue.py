import json
from pathlib import Path

import pytest

from lmrl.data import validate_row
from lmrl.tasks.flight_booking.airdialogue import load_airdialogue
from lmrl.tasks.flight_booking.format import FLIGHT_FIELDS, render_action, render_context

FIXTURES = Path(__file__).parent / "fixtures" / "airdialogue"
DATA, KB = FIXTURES / "data.json", FIXTURES / "kb.json"


def fixture_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(tmp_path: Path, data, kb) -> tuple[Path, Path]:
    """Write two JSON-lines files; each argument is a list of objects or the raw text."""
    paths = tmp_path / "train_data.json", tmp_path / "train_kb.json"
    for path, lines in zip(paths, (data, kb)):
        if isinstance(lines, bytes):
            path.write_bytes(lines)
        else:
            path.write_text(lines if isinstance(lines, str) else "".join(json.dumps(line) + "\n" for line in lines))
    return paths


def test_dialogue_merges_consecutive_turns_and_ends_with_the_rewarded_action():
    row = load_airdialogue(DATA, KB)[0]
    kb = fixture_lines(KB)[0]["kb"]
    assert row["messages"] == [
        {"role": "system", "content": render_context(kb, False)},
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hello, how can I help you?", "reward": 0.0},
        {"role": "user", "content": "I am Jennifer Young. I want to book a ticket from DTW to IAD."},
        {"role": "assistant", "content": "Sure, may I know your travel dates?", "reward": 0.0},
        {"role": "user", "content": "I would like to leave on Feb 1 in the afternoon and come back on Feb 3."},
        {"role": "assistant", "content": "Do you have any other preferences?", "reward": 0.0},
        {"role": "user", "content": "An economy seat with at most 1 connection, and my budget is 200."},
        {"role": "assistant", "reward": 0.0,
         "content": "There is a UA flight 1001 with 1 connection for 200 in economy. Shall I book it?"},
        {"role": "user", "content": "Yes, please book it."},
        {"role": "assistant", "content": "Your ticket is booked.", "reward": 0.0},
        {"role": "user", "content": "Thank you for your help."},
        {"role": "assistant", "content": render_action("book", 1001, "Jennifer Young"), "reward": 1.0},
    ]
    assert row["messages"][-1]["content"] == "Final action: book flight 1001 for Jennifer Young."
    assert row["done"] is True


def test_final_action_is_rewarded_only_when_it_matches_the_expected_action():
    rows = load_airdialogue(str(DATA), str(KB))
    assert [row["messages"][-1]["reward"] for row in rows] == [1.0, 0.0, 1.0, 0.0]
    assert [row["messages"][-1]["content"] for row in rows] == [
        "Final action: book flight 1001 for Jennifer Young.", "Final action: book flight 1000 for Kevin Moore.",
        "Final action: cancel for Susan Clark.", "Final action: no flight for Brian Lee.",
    ]
    for row in rows:
        assert all(m["reward"] == 0.0 for m in row["messages"][:-1] if m["role"] == "assistant")


def test_action_after_an_agent_turn_is_its_own_message():
    row = load_airdialogue(DATA, KB)[3]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant", "assistant"]
    assert row["messages"][-2] == {"role": "assistant", "reward": 0.0,
                                   "content": "Let me check. Sorry, there are no flights that match your needs."}
    assert row["messages"][-1] == {"role": "assistant", "content": "Final action: no flight for Brian Lee.",
                                   "reward": 0.0}


def test_rows_keep_the_structured_context_intent_and_actions():
    rows = load_airdialogue(DATA, KB)
    kbs, data = fixture_lines(KB), fixture_lines(DATA)
    for row, kb, dialogue in zip(rows, kbs, data):
        assert row["context"]["kb"] == kb["kb"]
        assert row["intent"] == dialogue["intent"]
    assert [row["context"]["reservation"] for row in rows] == [False, False, True, False]
    assert "Reservation on record: yes." in rows[2]["messages"][0]["content"]
    names = ["Jennifer Young", "Kevin Moore", "Susan Clark", "Brian Lee"]
    assert [row["action"] for row in rows] == [
        {"status": "book", "flight": 1001, "name": names[0]}, {"status": "book", "flight": 1000, "name": names[1]},
        {"status": "cancel", "flight": None, "name": names[2]}, {"status": "no_flight", "flight": None, "name": names[3]},
    ]
    assert [row["expected_action"] for row in rows] == [
        {"status": "book", "flight": 1001, "flights": [1001], "name": names[0]},
        {"status": "book", "flight": 1002, "flights": [1002], "name": names[1]},
        {"status": "cancel", "flight": None, "flights": [], "name": names[2]},
        {"status": "no_reservation", "flight": None, "flights": [], "name": names[3]},
    ]
    assert {row["success_rule"] for row in rows} == {"official"}


def test_every_row_is_a_valid_episode_with_reward_on_each_assistant_message():
    rows = load_airdialogue(DATA, KB)
    assert len(rows) == 4
    totals = []
    for i, row in enumerate(rows):
        totals.append(validate_row(row, i).total_reward)
        assert all("reward" in m for m in row["messages"] if m["role"] == "assistant")
        assert all("reward" not in m for m in row["messages"] if m["role"] != "assistant")
    assert totals == [1.0, 0.0, 1.0, 0.0]


def test_any_flight_tied_for_the_best_match_is_correct(tmp_path):
    data, kb = fixture_lines(DATA), fixture_lines(KB)
    data[0]["expected_action"]["flight"] = [1003, 1001]  # AirDialogue lists every flight tied on price
    data[1]["action"]["status"] = "change"  # right flight, wrong status
    data[1]["action"]["flight"] = [1002]
    rows = load_airdialogue(*write(tmp_path, data, kb))
    assert rows[0]["messages"][-1]["reward"] == 1.0
    assert rows[0]["expected_action"] == {"status": "book", "flight": 1003, "flights": [1003, 1001],
                                          "name": "Jennifer Young"}
    assert rows[1]["messages"][-1] == {"role": "assistant", "content": "Final action: change flight 1002 for Kevin Moore.",
                                       "reward": 0.0}


def test_empty_turns_are_dropped_without_splitting_a_merged_message(tmp_path):
    data, kb = fixture_lines(DATA), fixture_lines(KB)
    data[2]["dialogue"][4:5] = ["customer:", "customer:   Yes, please.  ", "agent:  ", "customer: Go ahead."]
    row = load_airdialogue(*write(tmp_path, data, kb))[2]
    assert [m["role"] for m in row["messages"]] == ["system", *["user", "assistant"] * 3, "user", "assistant"]
    assert row["messages"][5] == {"role": "user", "content": "Yes, please. Go ahead."}
    assert row["messages"][6]["content"] == "Your reservation has been cancelled."


@pytest.mark.parametrize(("reservation", "expected"), [(0, False), (False, False), (1, True), (True, True),
                                                      (1002, True)])
def test_reservation_is_zero_or_the_reserved_flight(tmp_path, reservation, expected):
    data, kb = fixture_lines(DATA), fixture_lines(KB)
    kb[2]["reservation"] = reservation
    row = load_airdialogue(*write(tmp_path, data, kb))[2]
    assert row["context"]["reservation"] is expected
    assert row["messages"][0]["content"] == render_context(kb[2]["kb"], expected)


def test_trailing_empty_lines_are_fine(tmp_path):
    data_text, kb_text = DATA.read_text() + "\n\n", KB.read_text() + "\r\n  \n"
    assert load_airdialogue(*write(tmp_path, data_text, kb_text)) == load_airdialogue(DATA, KB)


def _set(line: int, path: list, value):
    """Corrupt one object: set the value at `path` (or delete it when `value` is KeyError)."""

    def corrupt(lines):
        *parents, last = path
        target = lines[line - 1]
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        return lines

    return corrupt


def _replace_line(line: int, text: str):
    def corrupt(lines):
        texts = [json.dumps(obj) for obj in lines]
        texts[line - 1] = text
        return "".join(t + "\n" for t in texts)

    return corrupt


# name: (which file is corrupted, how, the line it must name, other text the message must hold)
CORRUPTIONS = {
    "dialogue missing": ("data", _set(2, ["dialogue"], KeyError), 2, ["'dialogue'"]),
    "dialogue not a list": ("data", _set(1, ["dialogue"], "customer: Hello."), 1, ["'dialogue'", "list"]),
    "turn not a string": ("data", _set(3, ["dialogue", 2], ["Susan Clark."]), 3, ["dialogue[2]"]),
    "turn without speaker": ("data", _set(1, ["dialogue", 3], "I want to book a ticket."), 1,
                             ["dialogue[3]", "customer:", "agent:"]),
    "unknown speaker": ("data", _set(4, ["dialogue", 1], "pilot: Welcome aboard."), 4, ["dialogue[1]", "pilot"]),
    "action missing": ("data", _set(3, ["action"], KeyError), 3, ["'action'"]),
    "expected action missing": ("data", _set(4, ["expected_action"], KeyError), 4, ["'expected_action'"]),
    "unknown status": ("data", _set(2, ["action", "status"], "refund"), 2, ["action.status", "refund", "no_flight"]),
    "expected status missing": ("data", _set(1, ["expected_action", "status"], KeyError), 1,
                                ["expected_action.status"]),
    "flight not ints": ("data", _set(1, ["action", "flight"], ["1001"]), 1, ["action.flight", "integers"]),
    "flight not a list": ("data", _set(2, ["expected_action", "flight"], "1002"), 2, ["expected_action.flight"]),
    "book without flight": ("data", _set(2, ["expected_action", "flight"], []), 2,
                            ["expected_action.flight", "'book'"]),
    "action with two flights": ("data", _set(1, ["action", "flight"], [1001, 1003]), 1,
                                ["action.flight", "lists 2 flights"]),
    "intent missing": ("data", _set(3, ["intent"], KeyError), 3, ["'intent'"]),
    "action name missing": ("data", _set(2, ["action", "name"], KeyError), 2, ["action.name", "success_rule=flight_status"]),
    "flight is a bare int": ("data", _set(1, ["action", "flight"], 1001), 1, ["action.flight", "list"]),
    "price is text": ("kb", _set(2, ["kb", 1, "price"], "200"), 2, ["kb[1].price", "integer"]),
    "airline not text": ("kb", _set(3, ["kb", 0, "airline"], 7), 3, ["kb[0].airline", "text"]),
    "kb missing": ("kb", _set(2, ["kb"], KeyError), 2, ["'kb'"]),
    "flight without price": ("kb", _set(4, ["kb", 3, "price"], KeyError), 4, ["kb[3].price"]),
    "flight number not an int": ("kb", _set(1, ["kb", 0, "flight_number"], "1000"), 1, ["kb[0].flight_number"]),
    "reservation is text": ("kb", _set(3, ["reservation"], "yes"), 3, ["'reservation'", "yes"]),
    "reservation missing": ("kb", _set(3, ["reservation"], KeyError), 3, ["'reservation'"]),
    "broken JSON in data": ("data", _replace_line(3, '{"intent": {"goal": "cancel"'), 3, ["invalid JSON"]),
    "broken JSON in kb": ("kb", _replace_line(2, '{"kb": [], "reservation": 0,}'), 2, ["invalid JSON"]),
    "line not an object": ("data", _replace_line(2, "[1, 2]"), 2, ["JSON object"]),
    "blank line in the middle": ("kb", _replace_line(2, "   "), 2, ["blank"]),
    "not UTF-8": ("data", lambda lines: "".join(json.dumps(o) + "\n" for o in lines[:2]).encode() + b"\xff\xfe{}\n"
                  + "".join(json.dumps(o) + "\n" for o in lines[3:]).encode(), 3, ["UTF-8"]),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_malformed_input_raises_naming_file_line_and_field(tmp_path, name):
    which, corrupt, line, expected = CORRUPTIONS[name]
    data, kb = fixture_lines(DATA), fixture_lines(KB)
    if which == "data":
        data = corrupt(data)
    else:
        kb = corrupt(kb)
    data_path, kb_path = write(tmp_path, data, kb)
    with pytest.raises(ValueError) as error:
        load_airdialogue(data_path, kb_path)
    message = str(error.value)
    bad_path = data_path if which == "data" else kb_path
    for text in [f"{bad_path}: line {line}", *expected]:
        assert text in message, f"{text!r} not in {message!r}"


def test_files_of_different_lengths_raise_naming_both(tmp_path):
    data_path, kb_path = write(tmp_path, fixture_lines(DATA), fixture_lines(KB)[:3])
    with pytest.raises(ValueError) as error:
        load_airdialogue(data_path, kb_path)
    message = str(error.value)
    assert f"{data_path} has 4 lines" in message and f"{kb_path} has 3" in message


@pytest.mark.parametrize("missing", ["data", "kb"])
def test_missing_file_raises_value_error_naming_it(tmp_path, missing):
    data_path, kb_path = write(tmp_path, fixture_lines(DATA), fixture_lines(KB))
    gone = data_path if missing == "data" else kb_path
    gone.unlink()
    with pytest.raises(ValueError, match=rf"{gone.name}: no such file.*{missing} file"):
        load_airdialogue(data_path, kb_path)


def test_every_kb_flight_in_the_fixture_has_all_fields():
    # Guards the fixture itself: the corruption tests rely on complete flights.
    for record in fixture_lines(KB):
        assert 3 <= len(record["kb"]) <= 4
        assert all(set(FLIGHT_FIELDS) <= set(flight) for flight in record["kb"])
