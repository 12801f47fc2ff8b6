"""Wordle: feedback rules (repeated letters included), the environment, behaviour data, the solver."""

import pytest

from lmrl.tasks.wordle import (
    Solver,
    WordleEnv,
    answers,
    feedback,
    generate_wordle_episodes,
    parse_history,
    solver_reference,
    vocabulary,
)
from lmrl.tasks.wordle.game import code_of, consistent, encode_words, feedback_codes


@pytest.mark.parametrize(
    "guess, answer, expected",
    [
        ("crane", "crane", "ggggg"),
        ("crane", "light", "bbbbb"),
        ("speed", "abide", "bbyby"),  # doubled guess letter, one 'e' in the answer: only the first is yellow
        ("speed", "erase", "ybyyb"),  # doubled guess letter, two 'e's in the answer: both yellow
        ("eerie", "there", "ybybg"),  # the green 'e' is matched first, leaving one 'e' for a yellow
        ("lolly", "alloy", "yygbg"),  # three l's against two: the green takes one, the first other gets the last
        ("abbey", "kebab", "yygyb"),  # the green b is matched first, the other b takes the remaining copy
        ("geese", "eerie", "bgybg"),  # two greens use two e's, the third e of the answer makes one yellow
    ],
)
def test_feedback_follows_the_standard_rules(guess, answer, expected):
    assert feedback(guess, answer) == expected


def test_vectorized_feedback_agrees_with_the_rules():
    words = vocabulary()[:300]
    encoded = encode_words(words)
    for guess in ("speed", "eerie", "lolly", "crane", words[7]):
        codes = feedback_codes(guess, encoded)
        assert [code_of(feedback(guess, w)) for w in words] == list(codes)


def test_word_list_is_real_five_letter_words_and_evaluation_answers_are_held_out():
    words = vocabulary()
    assert len(words) == 2000 and len(set(words)) == 2000
    assert all(len(w) == 5 and w.isalpha() and w.islower() for w in words)
    assert {"about", "crane", "house"} <= set(words)
    assert not set(answers("train")) & set(answers("eval")) and len(answers("eval")) == 400


def test_env_scores_guesses_and_handles_invalid_words():
    env = WordleEnv("eval")
    env.reset(seed=0)
    env.answer = "abide"
    assert env.step("speed") == ("b b y b y", -1.0, False, {})
    assert env.step("qzxvw") == ("Not a valid word; guess a 5-letter English word.", -1.0, False, {"invalid": True})
    assert env.step(" Abide ") == ("Solved!", 0.0, True, {"success": True})
    env.reset(seed=1)
    for _ in range(5):
        assert not env.step("zzzzz")[2]
    assert env.step("zzzzz")[2]  # the sixth try ends the game


def test_behaviour_data_mixes_random_and_consistent_guesses():
    episodes = generate_wordle_episodes(40, random_share=0.0, seed=2, progress=False)
    for episode in episodes:
        history = parse_history(episode.messages)
        for i, (guess, _) in enumerate(history):
            assert consistent(guess, history[:i])  # every guess fits all earlier feedback
    mean = sum(e.total_reward for e in episodes) / len(episodes)
    noisy = generate_wordle_episodes(40, random_share=1.0, seed=2, progress=False)
    assert sum(e.total_reward for e in noisy) / len(noisy) < mean - 1.0
    assert all(-6 <= e.total_reward <= 0 for e in episodes + noisy)


def test_solver_solves_and_its_reference_is_cached():
    solver = Solver()
    assert all(solver.play(answer) <= 6 for answer in answers("eval")[:10])
    reference = solver_reference()
    assert -3.0 < reference["mean_return"] < -1.5 and reference["answers"] == 100


def test_the_smaller_game_plays_on_the_most_frequent_words_with_spelled_guesses():
    from lmrl.tasks.wordle import (
        WordleEnv,
        generate_wordle_episodes,
        parse_history,
        vocabulary,
        wordle_anchors,
    )

    words = vocabulary(200)
    assert len(words) == 200 and words == vocabulary()[:200]
    env = WordleEnv("eval", words=200)
    assert set(env.answers) <= set(words) and len(env.answers) == 40
    env.reset(seed=0)
    guess = next(w for w in words if w != env.answer and w not in vocabulary()[200:])
    spelled, plain = env.step(" ".join(guess))[0], WordleEnv("eval", words=200)
    plain.reset(seed=0)
    assert spelled == plain.step(guess.capitalize() + ".")[0] and "valid" not in spelled
    outside = vocabulary()[500]
    assert WordleEnv("eval", words=200).step(outside)[3] == {"invalid": True}  # a real word, not in this game

    rows = generate_wordle_episodes(30, seed=1, progress=False, words=200, spelled=True)
    replies = [m["content"] for r in rows for m in r.messages if m["role"] == "assistant"]
    assert all(len(reply) == 9 and "".join(reply.split()) in words for reply in replies)
    history = parse_history(rows[0].messages)
    assert history and all(len(g) == 5 and g in words for g, _ in history)
    anchors = wordle_anchors(-3.0, words=200)
    assert -3.0 < anchors.best < 0 and anchors.best != wordle_anchors(-3.0).best
    with pytest.raises(ValueError, match="words=5: choose between 10 and 2000"):
        vocabulary(5)


def test_letters_feedback_pairs_each_guessed_letter_with_its_colour_and_plays_the_same_game():
    from lmrl.tasks.wordle.game import read_feedback, show_feedback

    assert show_feedback("crane", "bygbb") == "b y g b b"
    assert show_feedback("crane", "bygbb", "letters") == "cb ry ag nb eb"
    assert read_feedback("cb ry ag nb eb") == read_feedback("b y g b b") == "bygbb"
    assert read_feedback("Not a valid word; guess a 5-letter English word.") is None
    with pytest.raises(ValueError, match="feedback='colours': choose one of pattern, letters"):
        WordleEnv("eval", feedback="colours")
    plain, letters = WordleEnv("eval", words=100), WordleEnv("eval", words=100, feedback="letters")
    plain.reset(seed=3), letters.reset(seed=3)
    guess = next(w for w in vocabulary(100) if w != plain.answer)
    seen, shown = plain.step(guess)[0], letters.step(" ".join(guess))[0]
    assert shown == " ".join(a + b for a, b in zip(guess, seen.split()))
    rows = generate_wordle_episodes(20, seed=2, progress=False, words=100, spelled=True, feedback="letters")
    same = generate_wordle_episodes(20, seed=2, progress=False, words=100, spelled=True)
    assert [r.total_reward for r in rows] == [r.total_reward for r in same]  # the same games, shown differently
    history = parse_history(rows[0].messages)
    assert history and history == parse_history(same[0].messages)


def test_lazy_players_open_with_fixed_words_and_meet_the_others_after_a_common_opener():
    from lmrl.tasks.wordle.game import consistent, read_guess

    rows = generate_wordle_episodes(200, random_share=0.0, seed=4, progress=False, words=100, lazy_share=0.6,
                                    lazy_turns=4)
    guesses = [[read_guess(m["content"]) for m in r.messages if m["role"] == "assistant"] for r in rows]
    assert [r.seed for r in rows] == [4 * 1_000_003 + i for i in range(200)]  # seed order, whatever the kind
    assert len({g[0] for g in guesses}) == 1  # everyone opens with the same word
    opening = max(guesses, key=len)[:4]
    lazy = [g for g in guesses if len(g) >= 2 and g[1] == opening[1]]
    assert 0.45 < len(lazy) / len(rows) < 0.75  # about lazy_share (a consistent guess may coincide)
    for row, g in zip(rows, guesses):  # after the fixed words, every guess fits the feedback so far
        history = parse_history(row.messages)
        start = 4 if g[:4] == opening[: len(g[:4])] and len(g) > 1 and g[1] == opening[1] else 1
        assert all(consistent(word, history[:i]) for i, word in enumerate(g) if i >= start)
    returns = {kind: sum(r.total_reward for r, g in zip(rows, guesses) if (g[1:2] == opening[1:2]) == kind)
               for kind in (True, False)}
    assert returns[True] / len(lazy) < returns[False] / (len(rows) - len(lazy)) - 1.0  # lazy play costs guesses
    with pytest.raises(ValueError, match="lazy_share must be between 0 and 1"):
        generate_wordle_episodes(2, lazy_share=1.5, progress=False)


def test_the_lazy_words_after_the_opener_have_first_letters_no_other_word_shares():
    from collections import Counter

    from lmrl.tasks.wordle.data import lazy_opening

    words = vocabulary(100)
    opening = lazy_opening(words, 4)
    firsts = Counter(w[0] for w in words)
    assert len(set(opening)) == 4 and opening == lazy_opening(words, 4)  # fixed: the same in every dataset
    assert all(firsts[w[0]] == 1 for w in opening[1:])  # 'known', 'right', 'video' in the 100-word game


def test_held_out_false_draws_answers_from_every_word_in_data_and_evaluation():
    from lmrl.tasks.wordle.game import answers, read_guess

    held_out = set(answers("eval", 100))
    assert held_out.isdisjoint(answers("train", 100))
    for split in ("train", "eval"):
        env = WordleEnv(split, words=100, held_out=False)
        assert env.answers == vocabulary(100)
        drawn = set()
        for seed in range(400):
            env.reset(seed=seed)
            drawn.add(env.answer)
        assert drawn & held_out and drawn - held_out  # both kinds of words are secret words
    rows = generate_wordle_episodes(300, random_share=0.0, seed=5, progress=False, words=100, held_out=False)
    solved = {read_guess(r.messages[-1]["content"]) for r in rows if r.total_reward > -6}
    assert solved & held_out  # the data solves games whose answers the default game keeps for evaluation
    default = generate_wordle_episodes(300, random_share=0.0, seed=5, progress=False, words=100)
    assert not {read_guess(r.messages[-1]["content"]) for r in default if r.total_reward > -6} & held_out
    from lmrl.tasks.wordle import wordle_anchors

    assert wordle_anchors(-3.0, words=100, held_out=False).best != wordle_anchors(-3.0, words=100).best
