"""The negotiation task: buyer simulator rules, prices, behaviour data, critic features."""

import statistics

import pytest

from lmrl.data import validate_row
from lmrl.envs import TextEnv
from lmrl.tasks import get_task
from lmrl.tasks.negotiation import (
    NO_DEAL_REWARD,
    STRATEGIES,
    NegotiationEnv,
    SellerBehaviour,
    generate_negotiation_episodes,
    negotiation_features,
    oracle_return,
    parse_price,
)


def _env(style, seed=0):
    env = NegotiationEnv([style])
    env.reset(seed)
    return env


def test_prices_are_read_from_natural_text():
    assert parse_price("I can do $180.") == 180.0
    assert parse_price("Was $1,200, now $950.50 for you") == 950.5
    assert parse_price("150 dollars and it's yours") == 150.0
    assert parse_price("Sorry, that is too low.") is None


def test_the_env_is_a_text_env_and_shows_the_listing():
    env = NegotiationEnv()
    first = env.reset(3)
    assert isinstance(env, TextEnv)
    assert f"${env.list_price:,.0f}" in env.system_prompt and env.item in env.system_prompt
    assert parse_price(first) == env.offer


def test_a_price_within_the_buyers_limit_is_a_deal_at_that_price():
    env = _env("eager")
    ask = int(env.limit())
    _, reward, done, info = env.step(f"How about ${ask}?")
    assert done and info["success"] and info["deal"] == ask
    assert reward == pytest.approx(ask / env.list_price)


def test_accepting_sells_at_the_buyers_current_offer():
    env = _env("patient")
    _, reward, done, info = env.step("Okay, you have a deal.")
    assert done and info["deal"] == env.offer and reward == pytest.approx(env.offer / env.list_price)


def test_the_buyer_counters_upward_then_walks_away_when_patience_runs_out():
    env = _env("stingy")
    offers = [env.offer]
    turns = 0
    done = False
    while not done:
        text, reward, done, info = env.step(f"The price is firm at ${env.list_price:.0f}.")
        turns += 1
        if not done:
            offers.append(parse_price(text))
    assert reward == NO_DEAL_REWARD and not info["success"]
    assert turns == env.style.patience
    assert offers == sorted(offers) and offers[-1] > offers[0]
    assert offers[-1] <= env.reservation + 5


def test_asking_above_the_list_price_costs_extra_patience():
    env = _env("patient")
    env.step(f"${env.list_price * 2:.0f}, take it or leave it.")
    assert env.patience == env.style.patience - 2


def test_replies_without_price_acceptance_or_refusal_are_invalid_and_hold_the_ask():
    env = _env("patient")
    env.step("I can do $500.")
    _, _, _, info = env.step("banana")
    assert info["invalid"] and env.ask == 500
    _, _, _, info = env.step("Sorry, no.")
    assert not info["invalid"]


def test_behaviour_data_mixes_good_and_bad_sellers_below_the_oracle():
    import random

    from lmrl.envs import rollout

    means = {}
    for strategy in STRATEGIES:
        results = []
        for i in range(150):
            env = NegotiationEnv()
            seller = SellerBehaviour(strategy, random.Random(i))
            results += rollout(lambda env=env: env, lambda c, env=env, s=seller: [s.act(env)], [7_000 + i], 10,
                               batch_size=1, progress=False)
        means[strategy] = statistics.mean(r.total_reward for r in results)
    oracle = statistics.mean(oracle_return(7_000 + i) for i in range(150))
    assert means["stubborn"] < 0 < means["pushover"] < means["steady"] < oracle
    assert oracle < 1.0


def test_generated_episodes_are_valid_rows_with_the_deal_reward_on_the_last_reply():
    results = generate_negotiation_episodes(50, seed=1, progress=False)
    for i, result in enumerate(results):
        episode = validate_row(result.as_row(), i)
        assert episode.turns[0].role == "system" and episode.done
        assert episode.total_reward == pytest.approx(result.total_reward)
        assert all(t.reward == 0 for t in episode.turns[:-1])
    assert generate_negotiation_episodes(5, seed=1, progress=False)[0].messages == results[0].messages


def test_critic_features_read_the_price_slot_relative_to_the_list_price():
    messages = [{"role": "system", "content": "You are selling: desk. Listed at $200. Sell it for as much as you can."},
                {"role": "user", "content": "Would you take $100?"},
                {"role": "assistant", "content": "I can do $180."},
                {"role": "user", "content": "How about $120?"}]
    counter = negotiation_features(messages, "The lowest I can go is $160.")
    accept = negotiation_features(messages, "Deal.")
    garbage = negotiation_features(messages, "I can do $9999999.")
    assert counter[:3] == [0.8, 0.0, 1.0]
    assert counter[3:6] == [0.6, 0.5, 0.9] and counter[6] == pytest.approx(0.2) and counter[7] == 0.1
    assert accept[:3] == [0.6, 1.0, 0.0]
    assert garbage[0] == 3.0  # clipped


def test_the_task_is_registered_with_anchors_features_and_a_corpus_loader():
    task = get_task("negotiation")
    anchors = task.anchors(0.3)
    assert anchors.minimum == NO_DEAL_REWARD and 0.6 < anchors.best < 1.0
    assert task.critic_features is negotiation_features and task.load_corpus is not None
