"""Flight booking: the scripted customer, the correct action, behaviour data and task relabelling."""

import random

import pytest
from lmrl.tasks.flight_booking import (
    FlightBookingEnv,
    correct_action,
    generate_flight_episodes,
    meets,
    outcome_label,
    parse_action,
    random_scenario,
    relabel_context,
    relabel_row,
    render_action,
)

from lmrl.data import validate_row
from lmrl.envs.registry import get_task


def test_final_actions_round_trip_through_text():
    for status, flight in (("book", 1003), ("change", 1010), ("cancel", None), ("no_flight", None),
                           ("no_reservation", None)):
        assert parse_action("Sure. " + render_action(status, flight)) == (status, flight)
    assert parse_action("Final action: book.") is None  # book needs a flight
    assert parse_action("Where to?") is None


def test_the_customer_answers_what_is_asked_and_only_that():
    env = FlightBookingEnv(num_flights=8)
    env.reset(4)
    text, reward, done, info = env.step("Where are you flying from and to? What is your budget?")
    assert text == f"From {env.intent['departure_airport']} to {env.intent['return_airport']}. " \
                   f"My budget is ${env.intent['max_price']}."
    assert not done and reward == 0 and not info["invalid"]
    _, _, _, info = env.step("Nice weather.")
    assert info["invalid"]


def test_the_correct_final_action_ends_with_reward_one_and_any_other_with_zero():
    for seed in range(20):
        env = FlightBookingEnv(num_flights=8)
        env.reset(seed)
        status, flight = correct_action(env.kb, env.reservation, env.intent)
        _, reward, done, info = env.step(render_action(status, flight))
        assert done and reward == 1.0 and info["success"]
        env.reset(seed)
        wrong = ("no_flight", None) if status != "no_flight" else ("cancel", None)
        assert env.step(render_action(*wrong))[1] == 0.0


def test_the_correct_flight_is_the_cheapest_that_meets_every_constraint():
    for seed in range(50):
        kb, reservation, intent = random_scenario(random.Random(seed), 12)
        status, flight = correct_action(kb, True, intent)
        matches = [f for f in kb if meets(f, intent)]
        if intent["goal"] == "cancel":
            assert status == "cancel"
        elif not matches:
            assert status == "no_flight"
        else:
            chosen = next(f for f in kb if f["flight_number"] == flight)
            assert chosen["price"] == min(f["price"] for f in matches)


def test_behaviour_data_has_good_and_bad_agents_and_keeps_the_structured_context():
    results = generate_flight_episodes(200, seed=0, num_flights=8, progress=False)
    success = sum(r.total_reward for r in results) / len(results)
    assert 0.5 < success < 0.95
    row = results[0].as_row()
    validate_row(row, 0)
    assert {"context", "intent", "action", "expected_action"} <= set(row)
    assert row["messages"][0]["content"].startswith("You are a flight agent")


def test_relabelling_turns_a_failed_dialogue_into_a_consistent_successful_one():
    results = generate_flight_episodes(300, seed=1, num_flights=8, progress=False)
    failed = [r.as_row() for r in results if r.total_reward == 0 and r.extra["action"]]
    assert len(failed) > 20
    relabelled = 0
    for row in failed:
        new = relabel_row(row)
        if new is None:  # the action contradicts the customer's goal: no context makes it right
            assert row["action"]["status"] in ("book", "change", "cancel", "no_flight", "no_reservation")
            continue
        relabelled += 1
        kb, reservation = new["context"]["kb"], new["context"]["reservation"]
        action = new["action"]
        assert correct_action(kb, reservation, new["intent"]) == (action["status"], action["flight"])
        if action["flight"] is not None:  # the chosen flight meets every constraint
            assert meets(next(f for f in kb if f["flight_number"] == action["flight"]), new["intent"])
        assert validate_row(new, 0).total_reward == 1.0
        assert [m["content"] for m in new["messages"][1:]] == [m["content"] for m in row["messages"][1:]]
        assert new["messages"][0]["content"] != row["messages"][0]["content"] or reservation != row["context"]["reservation"]
    assert relabelled > len(failed) / 2


def test_relabelling_refuses_an_action_against_the_customers_goal():
    kb, _, intent = random_scenario(random.Random(0), 8)
    intent = {**intent, "goal": "cancel"}
    assert relabel_context(kb, True, intent, {"status": "book", "flight": kb[0]["flight_number"]}) is None


def test_outcome_labels_point_at_the_table_row_or_a_flightless_action():
    row = generate_flight_episodes(1, seed=2, num_flights=8, progress=False)[0].as_row()
    kb = row["context"]["kb"]
    row["action"] = {"status": "book", "flight": kb[5]["flight_number"]}
    assert outcome_label(row) == 5
    row["action"] = {"status": "no_reservation", "flight": None}
    assert outcome_label(row) == 8 + 2
    task = get_task("flight_booking")
    assert task.relabel is relabel_row and task.outcome_label is outcome_label
    with pytest.raises(ValueError, match="not in its table"):
        outcome_label({**row, "action": {"status": "book", "flight": 99}})
