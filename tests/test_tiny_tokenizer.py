"""A tokenizer trained on the data: GPT-2's word split, or merges that span spaces (a spelled Wordle guess)."""

import collections

import pytest

from lmrl.models.tiny import build_tiny, episode_texts, tiny_for_tokenizer, train_tokenizer
from lmrl.tasks.lmrl_gym_wordle import TASK, word_list


@pytest.fixture(scope="module")
def wordle_texts():
    return episode_texts([episode.as_row() for episode in TASK.make_data(1000, seed=0, progress=False)])


def test_merging_across_spaces_makes_each_spelled_guess_one_token(wordle_texts):
    spelled = [" ".join(word) for word in word_list()]
    split = train_tokenizer(wordle_texts, 2000)
    merged = train_tokenizer(wordle_texts, 2000, merge_across_spaces=True)
    assert collections.Counter(len(split(text).input_ids) for text in spelled) == {5: len(spelled)}  # a letter each
    assert collections.Counter(len(merged(text).input_ids) for text in spelled) == {1: len(spelled)}
    game = "Wordle:\nc r a n e<|endoftext|>b b y b g\ns l a t e"
    for tokenizer in (split, merged):
        assert tokenizer.decode(tokenizer(game).input_ids) == game
    # a word the data never spells still tokenizes, in more pieces
    assert len(merged("q u i z z").input_ids) > 1


def test_merge_across_spaces_is_a_setting_of_a_trained_tokenizer(wordle_texts):
    rows = [{"messages": [{"role": "user", "content": text}]} for text in wordle_texts[:50]]
    with pytest.raises(ValueError, match="merge_across_spaces must be true or false"):
        build_tiny(rows, vocab_size=300, merge_across_spaces="yes")
    _, tokenizer = build_tiny(rows, hidden_size=32, num_layers=1, vocab_size=300, merge_across_spaces=True)
    with pytest.raises(ValueError, match="the tokenizer is given: drop merge_across_spaces"):
        tiny_for_tokenizer(tokenizer, hidden_size=32, num_layers=1, merge_across_spaces=True)
