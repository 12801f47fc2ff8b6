"""Flight booking: the scripted customer, the correct action, behaviour data and task relabelling."""

import random

import pytest

from lmrl.data import validate_row
from lmrl.tasks import get_task
from lmrl.tasks.flight_booking import (
    FlightBookingEnv,
    correct_action,
    expected_action,
    generate_flight_episodes,
    is_success,
    meets,
    outcome_label,
    parse_action,
    random_scenario,
    relabel_context,
    relabel_row,
    render_action,
)


def test_final_actions_round_trip_through_text_with_and_without_a_name():
    for status, flight in (("book", 1003), ("change", 1010), ("cancel", None), ("no_flight", None),
                           ("no_reservation", None)):
        assert parse_action("Sure. " + render_action(status, flight)) == (status, flight, None)
        text = render_action(status, flight, "Edward hall.")
        assert parse_action(f"Sure. {text} Bye.") == (status, flight, "Edward hall")
    assert render_action("book", 1003, "  O'Neil-Smith, Ann ") == "Final action: book flight 1003 for O'Neil-Smith Ann."
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
        _, reward, done, info = env.step(render_action(status, flight, env.intent["name"].upper()))
        assert done and reward == 1.0 and info["success"]
        env.reset(seed)
        wrong = ("no_flight", None) if status != "no_flight" else ("cancel", None)
        assert env.step(render_action(*wrong, env.intent["name"]))[1] == 0.0


def test_the_official_rule_needs_the_customers_name_and_flight_status_does_not():
    official, flight_status = FlightBookingEnv(num_flights=8), FlightBookingEnv(8, success_rule="flight_status")
    for seed in range(10):
        for env in (official, flight_status):
            env.reset(seed)
        assert official.intent == flight_status.intent and official.kb == flight_status.kb
        name = official.intent["name"]
        assert official.step("May I have your name?")[0] == f"My name is {name}."
        status, flight = correct_action(official.kb, official.reservation, official.intent)
        for text, official_reward, flight_status_reward in (
                (render_action(status, flight, name), 1.0, 1.0), (render_action(status, flight), 0.0, 1.0),
                (render_action(status, flight, name[:-1]), 0.0, 1.0)):
            for env, expected in ((official, official_reward), (flight_status, flight_status_reward)):
                env.reset(seed)
                assert env.step(text)[1] == expected, (text, env.success_rule)
    with pytest.raises(ValueError, match="success_rule 'name'.*flight_status"):
        FlightBookingEnv(success_rule="name")


def test_any_flight_tied_for_the_lowest_price_is_correct():
    env = FlightBookingEnv(num_flights=8)
    for seed in range(200):
        env.reset(seed)
        expected = expected_action(env.kb, env.reservation, env.intent)
        if len(expected["flights"]) > 1:
            break
    else:
        pytest.fail("no tie in 200 scenarios")
    prices = {f["flight_number"]: f["price"] for f in env.kb}
    assert len({prices[n] for n in expected["flights"]}) == 1 and expected["flight"] == min(expected["flights"])
    for number in expected["flights"]:
        env.reset(seed)
        assert env.step(render_action(expected["status"], number, env.intent["name"]))[1] == 1.0
    assert not is_success({"status": expected["status"], "flight": None, "name": env.intent["name"]}, expected)


def test_the_generator_the_simulator_and_the_scorer_agree_on_every_episode():
    for rule in ("official", "flight_status"):
        results = generate_flight_episodes(150, seed=3, num_flights=6, progress=False, success_rule=rule)
        named = 0
        for result in results:
            row = result.as_row()
            assert row["success_rule"] == rule
            asked = any("your name" in m["content"] for m in row["messages"] if m["role"] == "assistant")
            assert rule == "official" or not asked  # only agents scored on the name ask it
            if row["action"] is None:  # the customer ran out of patience
                assert result.total_reward == 0.0
                continue
            named += row["action"]["name"] is not None
            assert result.total_reward == float(is_success(row["action"], row["expected_action"], rule))
        if rule == "official":
            assert named > 0.7 * len(results)
        else:
            assert named == 0


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


def test_flight_status_data_are_the_episodes_made_before_names_existed():
    """The CPU recipes' data (and their published table) stay reproducible: the digest was taken from
    `lmrl make-data flight_booking --episodes 300 --option num_flights=4` before the official rule."""
    import hashlib
    import json

    rows = [r.as_row() for r in generate_flight_episodes(20, seed=0, num_flights=4, progress=False,
                                                        success_rule="flight_status")]
    digest = hashlib.sha256(json.dumps([r["messages"] for r in rows], sort_keys=True).encode()).hexdigest()
    assert digest == "7df243e36a850d51028eaf959a6616ab1bee3cae516787c8c01da6d1b35d970b"
    official = generate_flight_episodes(1, seed=0, num_flights=4, progress=False)[0].as_row()
    assert 'followed by "for" and the customer\'s name.' in official["messages"][0]["content"]
    assert "customer's name" not in rows[0]["messages"][0]["content"]


def test_relabelling_turns_a_failed_dialogue_into_a_consistent_successful_one():
    results = generate_flight_episodes(300, seed=1, num_flights=8, progress=False, success_rule="flight_status")
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


def test_relabelling_under_the_official_rule_leaves_out_a_dialogue_with_the_wrong_name():
    results = generate_flight_episodes(300, seed=1, num_flights=8, progress=False)
    failed = [r.as_row() for r in results if r.total_reward == 0 and r.extra["action"]]
    wrong_name = [row for row in failed if row["action"]["name"] != row["intent"]["name"]]
    right_name = [row for row in failed if row["action"]["name"] == row["intent"]["name"]]
    assert wrong_name and right_name
    assert all(relabel_row(row) is None for row in wrong_name)
    relabelled = [new for new in map(relabel_row, right_name) if new is not None]
    assert len(relabelled) > len(right_name) / 2
    for new in relabelled:
        assert is_success(new["action"], new["expected_action"]) and validate_row(new, 0).total_reward == 1.0


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
