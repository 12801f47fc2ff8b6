"""LMRL-Gym's Wordle, ported: its word list, feedback text, rewards, data policy and normalized score."""

import statistics

import pytest

from lmrl.envs import EVAL_SEED, rollout
from lmrl.tasks.lmrl_gym_wordle import (
    TASK,
    LMRLGymWordleEnv,
    MixturePolicy,
    OptimalPolicy,
    RandomMixturePolicy,
    RepeatPolicy,
    StartWordPolicy,
    WrongPolicy,
    answers,
    dataset_statistics,
    feedback,
    generate_episodes,
    lmrl_gym_anchors,
    lmrl_gym_score,
    optimal_returns,
    word_list,
)
from lmrl.tasks.lmrl_gym_wordle.game import candidates, parse_history
from lmrl.tasks.lmrl_gym_wordle.policies import START_WORDS

START = [{"role": "user", "content": "Wordle:\n"}]


def play(env: LMRLGymWordleEnv, answer: str, guesses: list[str]) -> list[tuple]:
    env.reset(seed=0)
    env.answer = answer
    return [env.step(guess) for guess in guesses]


def test_word_list_is_wordle_official_400():
    words = word_list()
    assert len(words) == 431 and len(set(words)) == 431
    assert all(len(w) == 5 and w.isalpha() and w.islower() for w in words)
    assert (words[0], words[1], words[-1]) == ("elect", "nymph", "motto")
    assert {"panic", "trove", "slate", "raise", "audio", "gamma", "mamma"} <= set(words)  # panic, trove: tweet words
    assert not {"crane", "tales", "adieu", "there"} & set(words)


def test_every_split_has_every_answer_unless_some_are_held_out():
    assert answers("eval") == answers("train") == answers("validation") == word_list()
    validation, test, train = answers("validation", 50), answers("eval", 50), answers("train", 50)
    assert len(validation) == 50 and len(test) == 381 and test == train
    assert not set(validation) & set(test)
    assert answers("validation", 50) == validation  # a fixed draw
    with pytest.raises(ValueError, match="split must be"):
        answers("test")


@pytest.mark.parametrize(
    "guess, answer, text",
    [
        ("slate", "slate", "g g g g g\n"),
        ("crane", "twirl", "b y b b b\n"),
        ("mamma", "gamma", "y g g g g\n"),  # the first m is yellow though both of gamma's m's are matched
        ("geese", "sheep", "b y g y y\n"),  # three e's against two: every e outside a green is yellow
        ("eerie", "there", "y y y b g\n"),
        ("speed", "abide", "b b y y y\n"),
    ],
)
def test_feedback_text_judges_each_position_alone(guess, answer, text):
    assert " ".join(feedback(guess, answer)) + "\n" == text
    if guess in word_list():
        assert play(LMRLGymWordleEnv(), answer, [guess])[0][0] == text


def test_episode_opens_with_the_header_and_guesses_may_be_spelled_out():
    env = LMRLGymWordleEnv("eval")
    assert env.reset(seed=EVAL_SEED) == "Wordle:\n" and env.answer == "twirl"
    assert getattr(env, "system_prompt", None) is None
    for reply in ("s l a t e", "s l a t e\n", "slate", "  slate \n", "sl ate"):
        assert play(env, "gamma", [reply])[0] == ("b b y b b\n", -1.0, False, {})
    for reply in ("Slate", "slate.", "s-l-a-t-e", "slat", "crane", "s\tl a t e"):
        assert play(env, "gamma", [reply])[0] == ("\n", -1.0, False, {"invalid": True})


def test_rewards_six_tries_and_invalid_guesses():
    env = LMRLGymWordleEnv("eval")
    solved = play(env, "gamma", ["slate", "crane", "gamma"])
    assert [s[1:3] for s in solved] == [(-1.0, False), (-1.0, False), (0.0, True)]
    assert solved[-1] == ("g g g g g\n", 0.0, True, {"success": True})
    lost = play(env, "gamma", ["slate", "xxxxx", "elect", "xxxxx", "nymph", "motto"])
    assert [s[2] for s in lost] == [False] * 5 + [True]
    assert sum(s[1] for s in lost) == -6.0 and "success" not in lost[-1][3]
    harsh = LMRLGymWordleEnv("eval", bad_word_reward=-10.0)
    assert play(harsh, "gamma", ["xxxxx", "gamma"]) == [("\n", -10.0, False, {"invalid": True}),
                                                       ("g g g g g\n", 0.0, True, {"success": True})]
    assert play(env, "gamma", ["xxxxx"] * 5 + ["gamma"])[-1] == ("g g g g g\n", 0.0, True, {"success": True})


def test_eval_enumerates_the_answers_and_validation_draws_them():
    env = LMRLGymWordleEnv("eval")
    played = []
    for seed in range(EVAL_SEED, EVAL_SEED + 431):
        env.reset(seed)
        played.append(env.answer)
    assert sorted(played) == sorted(word_list())
    validation = LMRLGymWordleEnv("validation", held_out_answers=20)
    held = set()
    for seed in range(40):
        validation.reset(seed)
        held.add(validation.answer)
    assert held == set(answers("validation", 20))
    drawn = LMRLGymWordleEnv("validation")
    assert len({(drawn.reset(seed), drawn.answer)[1] for seed in range(200)}) > 100


def test_optimal_player_opens_with_slate_and_solves_every_answer_within_four_guesses():
    assert OptimalPolicy(seed=0)([START]) == ["s l a t e"]
    results = rollout(lambda: LMRLGymWordleEnv("eval"), OptimalPolicy(seed=0), range(EVAL_SEED, EVAL_SEED + 431),
                      max_turns=6, progress=False)
    returns = [r.total_reward for r in results]
    assert all(r.success for r in results) and min(returns) >= -3.0
    assert statistics.fmean(returns) == pytest.approx(-1.935, abs=0.05)  # their 1,000 games: the 100 anchor
    assert optimal_returns() == pytest.approx(-1.9420, abs=1e-4)  # exact, over the tie-breaks too
    assert statistics.fmean(returns) == pytest.approx(optimal_returns(), abs=0.05)


def test_data_player_matches_their_dataset_return():
    episodes = generate_episodes(3000, seed=0, progress=False)
    stats = dataset_statistics(episodes)
    assert stats["mean_return"] == pytest.approx(-4.121715, abs=0.1)  # their 1M episodes; 3.4 standard errors
    assert stats["success_rate"] == pytest.approx(0.696, abs=0.03) and stats["invalid_rate"] == 0.0
    first = episodes[0].messages
    assert first[0] == {"role": "user", "content": "Wordle:\n"}
    assert all(m["content"] == " ".join(m["content"].replace(" ", "")) for m in first if m["role"] == "assistant")
    assert all(m["content"].endswith("\n") for m in first[2::2])
    assert sum(m.get("reward", 0.0) for m in first) == episodes[0].total_reward
    again = [e.messages for e in generate_episodes(50, seed=1, progress=False)]
    assert again == [e.messages for e in generate_episodes(50, seed=1, progress=False)]
    assert again != [e.messages for e in generate_episodes(50, seed=2, progress=False)]


def test_smart_guesses_are_consistent_and_random_ones_are_not_always():
    episodes = rollout(lambda: LMRLGymWordleEnv("train"), RandomMixturePolicy(1.0, seed=1), range(200), 6,
                       progress=False)
    for episode in episodes:
        history = parse_history(episode.messages)
        for turn, (guess, _) in enumerate(history):
            assert guess in {word_list()[i] for i in candidates(history[:turn])}
    assert statistics.fmean(e.total_reward for e in episodes) > -3.0
    random_only = rollout(lambda: LMRLGymWordleEnv("train"), RandomMixturePolicy(0.0, seed=1), range(200), 6,
                          progress=False)
    assert statistics.fmean(e.total_reward for e in random_only) < -5.5


def test_other_scripted_players():
    conversation = [*START, {"role": "assistant", "content": "s l a t e"}, {"role": "user", "content": "b b y b b\n"}]
    ruled_out = set(word_list()) - {word_list()[i] for i in candidates(parse_history(conversation))}
    wrong = WrongPolicy(seed=0)
    assert all(wrong([conversation])[0].replace(" ", "") in ruled_out for _ in range(50))
    start = StartWordPolicy(seed=0)
    assert all(start([START])[0].replace(" ", "") in START_WORDS for _ in range(20))
    repeat = RepeatPolicy(start, seed=0)
    assert all(repeat([conversation]) == ["s l a t e"] for _ in range(5))
    mixture = MixturePolicy(0.5, OptimalPolicy(seed=0), wrong, seed=0)
    picks = {mixture([conversation])[0] for _ in range(40)}
    assert len(picks) > 2 and any(p.replace(" ", "") not in ruled_out for p in picks)


def test_normalized_score_is_their_straight_line():
    # load_results.py: ((R + 4.121715) / (4.121715 - 1.935)) * 50 + 50
    assert lmrl_gym_score(-4.121715) == pytest.approx(50.0)
    assert lmrl_gym_score(-1.935) == pytest.approx(100.0)
    assert lmrl_gym_score((-4.121715 - 1.935) / 2) == pytest.approx(75.0)
    assert lmrl_gym_score(-6.0) == pytest.approx(50 - 50 * 1.878285 / 2.186715)  # 7.05: below the data, same slope
    published = {-2.814208984375: 79.9, -2.849609375: 79.1, -2.62646484375: 84.2, -2.035400390625: 97.7,
                 -2.159912109375: 94.9}  # their BC, filtered BC, PPO, ILQL, MC
    anchors = lmrl_gym_anchors()
    assert anchors.minimum == pytest.approx(-6.30843)
    for mean_return, score in published.items():
        assert round(lmrl_gym_score(mean_return), 1) == score
        assert anchors.normalize(mean_return) == pytest.approx(lmrl_gym_score(mean_return))
    for mean_return in (-6.0, -5.0, -4.5):
        assert anchors.normalize(mean_return) == pytest.approx(lmrl_gym_score(mean_return))


def test_task_factories():
    assert TASK.name == "lmrl_gym_wordle" and TASK.max_turns == 6
    assert set(TASK.options) == {"bad_word_reward", "held_out_answers", "prob_smart", "normalization"}
    assert isinstance(TASK.make_env("eval"), LMRLGymWordleEnv)
    assert len(TASK.make_data(4, seed=3, progress=False, prob_smart=0.5)) == 4
    assert TASK.anchors(-3.0) == lmrl_gym_anchors()  # published anchors, whatever the data
    own = TASK.anchors(-4.0, normalization="dataset")
    assert (own.dataset, own.best) == (-4.0, pytest.approx(-1.9420, abs=1e-4))
    assert own.normalize(-4.0) == 50.0 and own.normalize(own.best) == 100.0
    with pytest.raises(ValueError, match="normalization"):
        TASK.anchors(-4.0, normalization="paper")
    with pytest.raises(ValueError, match="prob_smrt"):
        TASK.make_data(4, prob_smrt=0.5)


def test_reference_policies_on_every_answer():
    refs = {ref.name: ref for ref in TASK.reference_policies([])}
    assert list(refs) == ["random", "consistent", "behaviour", "optimal"]
    assert {ref.kind for ref in refs.values()} == {"reference"}  # each reads only the feedback the agent sees
    seeds = list(range(EVAL_SEED, EVAL_SEED + len(word_list())))
    returns = {name: statistics.fmean(e.total_reward for e in rollout(lambda: TASK.make_env("eval"), ref.policy, seeds,
                                                                      TASK.max_turns, progress=False))
               for name, ref in refs.items()}
    assert returns["random"] < returns["behaviour"] < returns["consistent"] < returns["optimal"]
    assert returns["optimal"] == pytest.approx(optimal_returns(), abs=0.05)  # -1.942 averaged over its tie-breaks
    assert returns["random"] < -5.5 and returns["behaviour"] == pytest.approx(-4.12, abs=0.25)
