"""Rollouts and scoring, independent of any task."""

import math

import pytest

from lmrl.envs import EpisodeResult, TaskAnchors, TextEnv, mean_ci, rollout, score_episodes


class CountingEnv:
    """Say 'stop' to end the episode with reward 1; anything else costs 0.5 and is invalid unless 'go'."""

    system_prompt = "Say go or stop."

    def reset(self, seed=None):
        self.turn = 0
        return f"turn 0 seed {seed}"

    def step(self, text):
        self.turn += 1
        if text == "stop":
            return "bye", 1.0, True, {"success": True}
        return f"turn {self.turn}", -0.5, False, {"invalid": text != "go"}


@pytest.mark.parametrize("name", ["maze", "wordle", "negotiation", "flight_booking"])
def test_every_task_env_keeps_the_text_env_contract(name):
    """reset(seed) is a text that depends only on the seed; step(reply) answers any reply, even nonsense,
    with (text, float reward, bool done, dict info) instead of raising."""
    from lmrl.tasks import get_task

    task = get_task(name)
    env, again = task.make_env(), task.make_env()
    assert isinstance(env, TextEnv)
    first = env.reset(seed=3)
    assert isinstance(first, str) and first and again.reset(seed=3) == first
    assert isinstance(getattr(env, "system_prompt", None) or "", str)
    for reply in ("", "!!! not a move %%%", "x" * 500):
        observation, reward, done, info = env.step(reply)
        assert isinstance(observation, str) and isinstance(info, dict)
        assert isinstance(reward, (int, float)) and math.isfinite(reward)
        assert done in (True, False)
        if done:
            env.reset(seed=4)


def test_an_object_without_step_is_not_a_text_env():
    class ResetOnly:
        def reset(self, seed=None):
            return "hi"

    assert isinstance(CountingEnv(), TextEnv) and not isinstance(ResetOnly(), TextEnv)


def test_rollout_batches_episodes_and_records_rewards_and_invalid_replies():
    calls = []

    def policy(conversations):
        calls.append(len(conversations))
        return ["stop" if len(c) > 5 else ("go" if i % 2 else "??") for i, c in enumerate(conversations)]

    results = rollout(CountingEnv, policy, seeds=[1, 2, 3], max_turns=10, progress=False)
    assert calls == [3, 3, 3]  # one policy call per turn for the whole batch
    first = results[0]
    assert first.messages[0] == {"role": "system", "content": "Say go or stop."}
    assert first.messages[1]["content"] == "turn 0 seed 1"
    assert [m["content"] for m in first.messages if m["role"] == "assistant"] == ["??", "??", "stop"]
    assert first.total_reward == pytest.approx(-0.5 - 0.5 + 1.0) and first.done and first.success
    assert first.invalid_actions == 2 and results[1].invalid_actions == 0


def test_truncated_episodes_end_on_the_agent_turn_and_are_not_done():
    results = rollout(CountingEnv, lambda convs: ["go"] * len(convs), seeds=[0], max_turns=3, progress=False)
    episode = results[0]
    assert not episode.done and episode.messages[-1]["role"] == "assistant"
    assert episode.as_row()["done"] is False and episode.total_reward == -1.5


def test_normalized_score_is_piecewise_linear_through_the_anchors():
    anchors = TaskAnchors(minimum=-20, dataset=-10, best=-4)
    assert anchors.normalize(-20) == 0 and anchors.normalize(-10) == 50 and anchors.normalize(-4) == 100
    assert anchors.normalize(-15) == 25 and anchors.normalize(-7) == 75


def test_scores_carry_a_95_percent_interval():
    mean, low, high = mean_ci([1.0, 2.0, 3.0, 4.0])
    # std = sqrt(5/3) = 1.291; half width = 1.96 * 1.291 / 2 = 1.265
    assert mean == 2.5 and low == pytest.approx(1.2347, abs=1e-3) and high == pytest.approx(3.7653, abs=1e-3)
    results = [EpisodeResult(seed=i, total_reward=r, success=r > 0) for i, r in enumerate([-10.0, -4.0])]
    score = score_episodes(results, TaskAnchors(-20, -10, -4))
    assert score.mean_return == -7 and score.normalized == 75 and score.success_rate == 0
    assert score.normalized_low < 75 < score.normalized_high
    with pytest.raises(ValueError):
        mean_ci([])
