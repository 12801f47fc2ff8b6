import copy
import json
import logging
from pathlib import Path

import pytest

from lmrl.data import validate_row
from lmrl.tasks.negotiation.craigslist import load_craigslist_bargain

FIXTURE = Path(__file__).parent / "fixtures" / "craigslist_bargain.json"
LOGGER = "lmrl.tasks.negotiation.craigslist"


def fixture_data() -> list:
    return json.loads(FIXTURE.read_text())


def write(tmp_path: Path, data, name: str = "corrupt.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_dialogue_with_buyer_first_merges_turns_and_rewards_the_deal():
    row = load_craigslist_bargain(FIXTURE)[0]
    assert row["messages"] == [
        {"role": "system", "content": "You are selling: Trek bike. Listed at $200. Sell it for as much as you can. "
                                      "Trek FX 2 hybrid, 21 speeds. Ridden a few times, new tires."},
        {"role": "user", "content": "Hi, is the Trek bike still available? I could pay $140 cash today."},
        {"role": "assistant", "content": "Yes it is! It's barely used, so $140 is too low. I could do $190.",
         "reward": 0.0},
        {"role": "user", "content": "How about $170? I can pick it up tonight."},
        {"role": "assistant", "content": "Let's meet in the middle at $180. I offer $180.", "reward": 0.9},
        {"role": "user", "content": "I accept."},
    ]
    assert row["done"] is True
    assert row["scenario_id"] == "S_bike0001"
    assert row["list_price"] == 200.0
    assert row["deal_price"] == 180.0


def test_seller_first_no_deal_drops_empty_messages_without_breaking_merges():
    row = load_craigslist_bargain(FIXTURE)[1]
    assert [m["role"] for m in row["messages"]] == ["system", "assistant", "user", "assistant", "user"]
    # The whitespace-only buyer message between two seller messages is dropped, so they merge.
    assert row["messages"][1] == {"role": "assistant", "reward": 0.0,
                                  "content": "Hi! The couch is in great shape, asking $350. It's only a year old."}
    assert row["messages"][3] == {"role": "assistant", "content": "Sorry, the lowest I can go is $300.",
                                  "reward": -0.5}
    assert row["messages"][4] == {"role": "user", "content": "I quit."}
    assert row["deal_price"] is None
    assert row["list_price"] == 350.0


def test_seller_accepting_the_buyers_offer_is_the_rewarded_last_move():
    row = load_craigslist_bargain(FIXTURE)[2]
    assert row["messages"][-2] == {"role": "user", "content": "Meet me at $60? I offer $60."}
    assert row["messages"][-1] == {"role": "assistant", "content": "I accept.", "reward": 60 / 80}
    assert row["messages"][2]["reward"] == 0.0
    assert row["deal_price"] == 60.0


def test_dialogue_without_seller_turns_is_skipped_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        rows = load_craigslist_bargain(str(FIXTURE))
    assert [row["scenario_id"] for row in rows] == ["S_bike0001", "S_couch002", "S_phone003"]
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "Skipped 1 of 4" in message and "seller never spoke" in message and "C_3d4e5f607182" in message


def test_no_warning_when_nothing_is_skipped(tmp_path, caplog):
    path = write(tmp_path, fixture_data()[:3], "clean.json")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert len(load_craigslist_bargain(path)) == 3
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_every_row_is_a_valid_episode_with_reward_on_each_assistant_message():
    rows = load_craigslist_bargain(FIXTURE)
    totals = []
    for i, row in enumerate(rows):
        episode = validate_row(row, i)
        totals.append(episode.total_reward)
        assert all("reward" in m for m in row["messages"] if m["role"] == "assistant")
        assert all("reward" not in m for m in row["messages"] if m["role"] != "assistant")
    assert totals == pytest.approx([0.9, -0.5, 0.75])


def test_no_deal_reward_is_configurable_and_a_deal_needs_outcome_reward_one(tmp_path):
    data = fixture_data()
    data[0]["outcome"]["reward"] = 0  # an offer was recorded but the deal did not go through
    rows = load_craigslist_bargain(write(tmp_path, data), no_deal_reward=-1.0)
    assert rows[0]["deal_price"] is None
    assert rows[0]["messages"][4]["reward"] == -1.0
    assert rows[1]["messages"][3]["reward"] == -1.0
    assert rows[2]["messages"][-1]["reward"] == 0.75


def _set(path, value):
    def corrupt(data):
        *parents, last = path
        target = data
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        return data

    return corrupt


CORRUPTIONS = {
    "offer without price": (_set([0, "events", 5, "data", "price"], KeyError),
                            ["dialogue 0", "C_0a1b2c3d4e5f", "events[5].data.price"]),
    "unknown action": (_set([1, "events", 2, "action"], "bargain"),
                       ["dialogue 1", "C_1b2c3d4e5f60", "events[2].action", "bargain"]),
    "event without action": (_set([2, "events", 0, "action"], KeyError), ["dialogue 2", "events[0].action"]),
    "no seller kb": (_set([2, "scenario", "kbs", 1, "personal", "Role"], "buyer"),
                     ["dialogue 2", "C_2c3d4e5f6071", "scenario.kbs", "seller"]),
    "price is text": (_set([0, "scenario", "kbs", 1, "item", "Price"], "cheap"),
                      ["dialogue 0", "scenario.kbs[1].item.Price", "cheap"]),
    "price not positive": (_set([1, "scenario", "kbs", 0, "item", "Price"], 0),
                           ["dialogue 1", "scenario.kbs[0].item.Price"]),
    "no title": (_set([2, "scenario", "kbs", 1, "item", "Title"], KeyError),
                 ["dialogue 2", "scenario.kbs[1].item.Title"]),
    "agent out of range": (_set([1, "events", 3, "agent"], 2), ["dialogue 1", "events[3].agent"]),
    "message not text": (_set([0, "events", 0, "data"], 42), ["dialogue 0", "events[0].data"]),
    "events missing": (_set([3, "events"], KeyError), ["dialogue 3", "C_3d4e5f607182", "'events'"]),
    "scenario missing": (_set([0, "scenario"], KeyError), ["dialogue 0", "'scenario'"]),
    "outcome not an object": (_set([2, "outcome"], "deal"), ["dialogue 2", "'outcome'"]),
    "dialogue not an object": (_set([3], "C_3d4e5f607182"), ["dialogue 3", "[3]"]),
    "top level is a dict": (lambda data: {"dialogues": data}, ["top level", "list of dialogues"]),
    "broken JSON": (lambda data: json.dumps(data, indent=1)[:-40], ["invalid JSON", "line ", "column "]),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_malformed_input_raises_naming_file_dialogue_and_field(tmp_path, name):
    corrupt, expected = CORRUPTIONS[name]
    path = write(tmp_path, corrupt(copy.deepcopy(fixture_data())))
    with pytest.raises(ValueError) as error:
        load_craigslist_bargain(path)
    message = str(error.value)
    for text in ["corrupt.json", *expected]:
        assert text in message, f"{text!r} not in {message!r}"


def test_missing_file_raises_value_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere\.json: no such file"):
        load_craigslist_bargain(tmp_path / "nowhere.json")
