"""The row schema, tokenization to token-level MDP tensors, loading and collation (docs/design.md, section 1: Data)."""

import json
import math

import pytest
import torch

from lmrl.data import (
    EpisodeCollator,
    encode_prompt,
    load_episodes,
    prepare_dataset,
    tokenize_episode,
    validate_row,
)
from lmrl.models.tiny import CHAT_TEMPLATE, EOS, train_tokenizer

SENTENCES = [
    "Hello, how are you today?",
    "I am fine, thank you. And you?",
    "Would you take one hundred for the bike?",
    "I can do one hundred and eighty.",
    "Deal. Great, sold.",
] * 4

MESSAGES = [
    {"role": "user", "content": "Would you take one hundred?"},
    {"role": "assistant", "content": "I can do eighty.", "reward": 0.5},
    {"role": "user", "content": "Deal."},
    {"role": "assistant", "content": "Great, sold.", "reward": 1.0},
]


@pytest.fixture(scope="module")
def plain_tokenizer():
    return train_tokenizer(SENTENCES, vocab_size=300)


@pytest.fixture(scope="module")
def chatml_tokenizer():
    return train_tokenizer(SENTENCES + ["user assistant system"], vocab_size=300, chat_template=CHAT_TEMPLATE)


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def action_spans(action_mask):
    """(start, end) of each run of 1s."""
    spans, start = [], None
    for i, bit in enumerate([*action_mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            spans.append((start, i))
            start = None
    return spans


# -- validate_row -------------------------------------------------------------------------------------


def good_row(**changes):
    row = {"messages": [dict(m) for m in MESSAGES], "done": True}
    row.update(changes)
    return row


def with_message(i, **changes):
    row = good_row()
    row["messages"][i].update(changes)
    return row


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"text": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        (with_message(0, role="robot"), "messages[0].role"),
        ({"messages": [{"content": "hi"}, {"role": "assistant", "content": "hello"}]}, "messages[0].role"),
        (with_message(1, content=42), "messages[1].content"),
        (with_message(1, content=None), "messages[1].content"),
        (with_message(1, reward="high"), "messages[1].reward"),
        (with_message(1, reward=float("nan")), "messages[1].reward"),
        (with_message(3, reward=float("inf")), "messages[3].reward"),
        (with_message(1, reward=True), "messages[1].reward"),
        (with_message(0, reward=1.0), "messages[0].reward"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "x"}]}, "messages"),
        (good_row(done="yes"), "done"),
        (good_row(done=1), "done"),
        (good_row(reward="1.0"), "reward"),
        (good_row(reward=float("-inf")), "reward"),
        ({"prompt": "Hello?"}, "completion"),
        ({"completion": "Hi."}, "prompt"),
    ],
    ids=[
        "missing messages", "empty messages", "unknown role", "missing role", "content not a string",
        "content missing", "reward a string", "reward nan", "reward inf", "reward bool", "reward on user",
        "no assistant turn", "done a string", "done an int", "row reward a string", "row reward -inf",
        "prompt without completion", "completion without prompt",
    ],
)
def test_bad_rows_raise_an_error_naming_the_row_and_the_field(row, field):
    with pytest.raises(ValueError) as error:
        validate_row(row, 7)
    message = str(error.value)
    assert "row 7" in message
    assert field in message


def test_a_row_that_is_not_an_object_is_rejected_with_its_index():
    with pytest.raises(ValueError, match="row 3") as error:
        validate_row(["user", "assistant"], 3)
    assert "messages" in str(error.value)


def test_valid_row_becomes_an_episode_with_rewards_on_assistant_turns():
    episode = validate_row(good_row())
    assert [(t.role, t.content, t.reward) for t in episode.turns] == [
        ("user", "Would you take one hundred?", 0.0),
        ("assistant", "I can do eighty.", 0.5),
        ("user", "Deal.", 0.0),
        ("assistant", "Great, sold.", 1.0),
    ]
    assert episode.done is True
    assert episode.total_reward == 1.5


def test_row_level_reward_is_added_to_the_last_assistant_message():
    episode = validate_row(good_row(reward=2.0))
    assert [t.reward for t in episode.turns] == [0.0, 0.5, 0.0, 3.0]  # 1.0 + 2.0 on the last reply


def test_missing_rewards_default_to_zero_and_done_to_true():
    episode = validate_row({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    assert [t.reward for t in episode.turns] == [0.0, 0.0]
    assert episode.done is True


def test_done_false_marks_a_truncated_episode():
    assert validate_row(good_row(done=False)).done is False


def test_prompt_completion_strings_become_a_user_and_an_assistant_turn():
    episode = validate_row({"prompt": "Hello?", "completion": "Hi.", "reward": 0.25})
    assert [(t.role, t.content, t.reward) for t in episode.turns] == [("user", "Hello?", 0.0), ("assistant", "Hi.", 0.25)]


# -- tokenization without a chat template ------------------------------------------------------------


def test_plain_tokenization_concatenates_messages_and_marks_each_reply_and_its_eos(plain_tokenizer):
    tok = plain_tokenizer
    eos = tok.eos_token_id
    user1, reply1 = ids(tok, MESSAGES[0]["content"]), ids(tok, MESSAGES[1]["content"])
    user2, reply2 = ids(tok, MESSAGES[2]["content"]), ids(tok, MESSAGES[3]["content"])
    assert tok.chat_template is None
    # Like GPT-2, this tokenizer puts no start token before a text, so neither does the episode.
    assert tok("Deal.")["input_ids"] == ids(tok, "Deal.")

    out = tokenize_episode(tok, validate_row(good_row()))

    assert out.input_ids == user1 + reply1 + [eos] + user2 + reply2 + [eos]
    assert out.action_mask == [0] * len(user1) + [1] * (len(reply1) + 1) + [0] * len(user2) + [1] * (len(reply2) + 1)
    end1 = len(user1) + len(reply1)  # index of the first reply's EOS
    end2 = len(out.input_ids) - 1
    expected_rewards = [0.0] * len(out.input_ids)
    expected_rewards[end1], expected_rewards[end2] = 0.5, 1.0
    assert out.rewards == expected_rewards
    assert out.done is True and out.truncated is False


def test_plain_episode_opening_with_a_reply_gets_a_start_token_to_act_from(plain_tokenizer):
    tok = plain_tokenizer
    episode = validate_row({"messages": [{"role": "assistant", "content": "Hello, how are you?", "reward": 1.0}]})
    out = tokenize_episode(tok, episode)
    reply = ids(tok, "Hello, how are you?")
    assert out.input_ids == [tok.bos_token_id] + reply + [tok.eos_token_id]
    assert out.action_mask == [0] + [1] * (len(reply) + 1)
    assert out.rewards == [0.0] * (len(reply) + 1) + [1.0]


def test_plain_tokenization_starts_with_the_tokenizers_own_bos():
    from tokenizers import processors

    tok = train_tokenizer(SENTENCES, vocab_size=300)
    bos = tok.bos_token_id
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", special_tokens=[(EOS, bos)]
    )
    assert tok("Deal.")["input_ids"] == [bos] + ids(tok, "Deal.")  # Llama-style: BOS before every text
    out = tokenize_episode(tok, validate_row(good_row()))
    user1 = ids(tok, MESSAGES[0]["content"])
    assert out.input_ids[: 1 + len(user1)] == [bos] + user1
    assert out.action_mask[: 1 + len(user1)] == [0] * (1 + len(user1))


# -- tokenization with a chat template ---------------------------------------------------------------


def test_chat_template_actions_are_exactly_the_reply_and_its_eos(chatml_tokenizer):
    tok = chatml_tokenizer
    out = tokenize_episode(tok, validate_row(good_row()))
    spans = action_spans(out.action_mask)
    actions = [tok.decode(out.input_ids[a:b], skip_special_tokens=False) for a, b in spans]
    assert actions == ["I can do eighty." + EOS, "Great, sold." + EOS]
    assert all("<|im_start|>assistant\n" not in action for action in actions)
    # the header right before each action is observation
    for start, _ in spans:
        header = tok.decode(out.input_ids[:start], skip_special_tokens=False)
        assert header.endswith("<|im_start|>assistant\n")


def test_chat_template_token_ids_decode_to_the_rendered_conversation(chatml_tokenizer):
    tok = chatml_tokenizer
    out = tokenize_episode(tok, validate_row(good_row()))
    rendered = tok.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in MESSAGES], tokenize=False
    )
    assert rendered == (
        "<|im_start|>user\nWould you take one hundred?<|endoftext|>\n"
        "<|im_start|>assistant\nI can do eighty.<|endoftext|>\n"
        "<|im_start|>user\nDeal.<|endoftext|>\n"
        "<|im_start|>assistant\nGreat, sold.<|endoftext|>\n"
    )
    assert tok.decode(out.input_ids, skip_special_tokens=False) == rendered


def test_chat_template_rewards_land_on_the_eos_closing_each_reply(chatml_tokenizer):
    tok = chatml_tokenizer
    out = tokenize_episode(tok, validate_row(good_row()))
    rewarded = [i for i, r in enumerate(out.rewards) if r != 0.0]
    assert [out.rewards[i] for i in rewarded] == [0.5, 1.0]
    assert [out.input_ids[i] for i in rewarded] == [tok.eos_token_id, tok.eos_token_id]
    assert [end - 1 for _, end in action_spans(out.action_mask)] == rewarded


def test_chat_template_episode_opening_with_a_reply_acts_after_the_templates_opening_header(chatml_tokenizer):
    tok = chatml_tokenizer  # found by tests/test_fuzz.py: apply_chat_template refuses an empty conversation
    out = tokenize_episode(tok, validate_row({"messages": [{"role": "assistant", "content": "Hello."},
                                                           {"role": "user", "content": "Hi."}]}))
    (start, end), = action_spans(out.action_mask)
    assert tok.decode(out.input_ids[:start], skip_special_tokens=False) == "<|im_start|>assistant\n"
    assert tok.decode(out.input_ids[start:end], skip_special_tokens=False) == "Hello." + EOS
    assert encode_prompt(tok, []) == out.input_ids[:start]


def test_a_template_that_adds_a_default_system_message_keeps_it_observation_before_an_opening_reply():
    """Like SmolLM2's template: a conversation without a system message gets one, also when the
    assistant speaks first; the reply after it, and the prompt to decode it, see that message."""
    default = "<|im_start|>system\nYou help.<|endoftext|>\n"
    template = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" + repr(default)
                .join(["{{ ", " }}"]) + "{% endif %}" + CHAT_TEMPLATE.split("{% for message in messages %}", 1)[1])
    tok = train_tokenizer(SENTENCES + ["user assistant system You help."], vocab_size=300, chat_template=template)
    out = tokenize_episode(tok, validate_row({"messages": [{"role": "assistant", "content": "Hello."},
                                                           {"role": "user", "content": "Hi."}]}))
    (start, end), = action_spans(out.action_mask)
    assert tok.decode(out.input_ids[:start], skip_special_tokens=False) == default + "<|im_start|>assistant\n"
    assert tok.decode(out.input_ids[start:end], skip_special_tokens=False) == "Hello." + EOS
    assert encode_prompt(tok, []) == out.input_ids[:start]


# -- encode_prompt ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["plain_tokenizer", "chatml_tokenizer"])
def test_encode_prompt_is_the_training_context_of_the_last_reply(which, request):
    tok = request.getfixturevalue(which)
    out = tokenize_episode(tok, validate_row(good_row()))
    last_action_start = action_spans(out.action_mask)[-1][0]
    history = [{"role": m["role"], "content": m["content"]} for m in MESSAGES[:-1]]
    assert encode_prompt(tok, history) == out.input_ids[:last_action_start]


@pytest.mark.parametrize("which", ["plain_tokenizer", "chatml_tokenizer"])
def test_encode_prompt_of_a_string_is_a_single_user_turn(which, request):
    tok = request.getfixturevalue(which)
    out = tokenize_episode(tok, validate_row({"prompt": "Hello, how are you?", "completion": "Fine."}))
    first_action_start = action_spans(out.action_mask)[0][0]
    assert encode_prompt(tok, "Hello, how are you?") == out.input_ids[:first_action_start]


# -- truncation ------------------------------------------------------------------------------------------


def test_long_episodes_are_truncated_from_the_left_and_flagged(plain_tokenizer):
    episode = validate_row(good_row())
    full = tokenize_episode(plain_tokenizer, episode)
    short = tokenize_episode(plain_tokenizer, episode, max_length=6)
    assert len(full.input_ids) > 6
    assert short.input_ids == full.input_ids[-6:]
    assert short.action_mask == full.action_mask[-6:]
    assert short.rewards == full.rewards[-6:]
    assert short.rewards[-1] == 1.0  # the outcome at the end is kept
    assert short.truncated is True
    fits = tokenize_episode(plain_tokenizer, episode, max_length=len(full.input_ids))
    assert fits.input_ids == full.input_ids and fits.truncated is False


# -- prepare_dataset and load_episodes --------------------------------------------------------------


def test_prepare_dataset_returns_token_level_columns(plain_tokenizer):
    second = {"messages": [{"role": "user", "content": "Hello?"},
                           {"role": "assistant", "content": "Hi.", "reward": 0.25}], "done": False}
    rows = [good_row(), second]
    data = prepare_dataset(rows, plain_tokenizer)
    assert set(data.column_names) == {
        "input_ids", "attention_mask", "action_mask", "rewards", "dones", "returns", "truncated"
    }
    assert len(data) == 2
    first = tokenize_episode(plain_tokenizer, validate_row(rows[0]))
    assert data[0]["input_ids"] == first.input_ids
    assert data[0]["action_mask"] == first.action_mask
    assert data[0]["attention_mask"] == [1] * len(first.input_ids)
    assert data["dones"] == [1.0, 0.0]
    assert data["returns"] == [1.5, 0.25]
    assert data["truncated"] == [False, False]


def test_prepare_dataset_keeps_fields_that_only_later_rows_have(plain_tokenizer):
    # The first row has neither a row-level reward nor `done`; the second has both. Neither may be lost.
    rows = [
        {"messages": [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}]},
        {"messages": [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}],
         "reward": 1.0, "done": False},
    ]
    data = prepare_dataset(rows, plain_tokenizer)
    assert data["returns"] == [0.0, 1.0]
    assert data["dones"] == [1.0, 0.0]


def test_prepare_dataset_names_the_index_of_a_bad_row(plain_tokenizer):
    rows = [good_row(), good_row(), with_message(1, role="robot")]
    with pytest.raises(ValueError, match="row 2") as error:
        prepare_dataset(rows, plain_tokenizer)
    assert "role" in str(error.value)


def test_prepare_dataset_rejects_an_empty_dataset(plain_tokenizer):
    with pytest.raises(ValueError, match="empty"):
        prepare_dataset([], plain_tokenizer)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def test_load_episodes_names_the_malformed_line_of_a_jsonl_file(tmp_path):
    path = tmp_path / "episodes.jsonl"
    good = json.dumps(good_row())
    path.write_text(f"{good}\n{good}\n{{\"messages\": [\n{good}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        load_episodes(path, cache_dir=str(tmp_path / "cache"))


def test_load_episodes_on_a_missing_file_says_so(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_episodes(tmp_path / "missing.jsonl")


def test_load_episodes_round_trips_jsonl_and_json_files(tmp_path):
    rows = [good_row(), good_row(done=False)]
    rows[1]["messages"][3]["reward"] = -1.0
    jsonl = tmp_path / "episodes.jsonl"
    write_jsonl(jsonl, rows)
    array = tmp_path / "episodes.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    expected = [validate_row(row) for row in rows]
    for path in (jsonl, array):
        data = load_episodes(path, cache_dir=str(tmp_path / "cache"))
        assert len(data) == 2
        assert [validate_row(row, i) for i, row in enumerate(data)] == expected
        assert data[1]["done"] is False
        assert [m["content"] for m in data[0]["messages"]] == [m["content"] for m in MESSAGES]


# -- collator --------------------------------------------------------------------------------------------


def test_collator_pads_right_with_zero_masks_and_rewards():
    features = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "action_mask": [0, 1, 1],
         "rewards": [0.0, 0.0, 1.5], "dones": 1.0},
        {"input_ids": [8, 9, 10, 11, 12], "attention_mask": [1] * 5, "action_mask": [0, 0, 1, 1, 1],
         "rewards": [0.0, 0.0, 0.0, 0.0, -1.0], "dones": 0.0},
    ]
    batch = EpisodeCollator(pad_token_id=3)(features)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 3, 3], [8, 9, 10, 11, 12]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["action_mask"].tolist() == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]]
    assert batch["rewards"].tolist() == [[0.0, 0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, -1.0]]
    assert batch["rewards"].dtype == torch.float32
    assert batch["input_ids"].dtype == torch.long
    assert batch["dones"].dtype.is_floating_point
    assert batch["dones"].shape == (2,)
    assert batch["dones"].tolist() == [1.0, 0.0]


def test_collator_pads_the_columns_an_algorithm_declares_and_leaves_out_the_others():
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1] * 3, "action_mask": [0, 1, 1], "rewards": [0.0] * 3,
             "context_mask": [1, 1], "weights": [0.5, 0.5, 0.5], "outcome": 2, "returns": 1.0},
            {"input_ids": [8], "attention_mask": [1], "action_mask": [1], "rewards": [1.0],
             "context_mask": [1], "weights": [2.0], "outcome": 0, "returns": 0.0}]
    collate = EpisodeCollator(pad_token_id=3, pad_values={"context_mask": 0, "weights": -1.0},
                              scalar_columns=("outcome",))
    batch = collate(rows)
    assert batch["context_mask"].tolist() == [[1, 1, 0], [1, 0, 0]] and batch["context_mask"].dtype == torch.long
    assert batch["weights"].tolist() == [[0.5, 0.5, 0.5], [2.0, -1.0, -1.0]] and batch["weights"].dtype == torch.float32
    assert batch["outcome"].tolist() == [2, 0]
    assert "returns" not in batch and "context_mask" not in EpisodeCollator(pad_token_id=3)(rows)
    with pytest.raises(KeyError, match="pad_values declares 'mask2', but the rows have no such column"):
        EpisodeCollator(pad_token_id=3, pad_values={"mask2": 0})(rows)


def test_collator_pads_to_a_multiple_when_asked():
    batch = EpisodeCollator(pad_token_id=0, pad_to_multiple_of=4)(
        [{"input_ids": [5, 6, 7, 8, 9], "attention_mask": [1] * 5, "action_mask": [0, 1, 1, 1, 1],
          "rewards": [0.0] * 5, "dones": 1.0}]
    )
    assert batch["input_ids"].shape == (1, 8)
    assert batch["attention_mask"].sum() == 5


def test_collator_batches_prepared_rows(plain_tokenizer):
    short = {"messages": [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}],
             "done": True}
    data = prepare_dataset([good_row(), short], plain_tokenizer)
    batch = EpisodeCollator(pad_token_id=plain_tokenizer.pad_token_id)([data[0], data[1]])
    lengths = [len(data[0]["input_ids"]), len(data[1]["input_ids"])]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert math.isclose(batch["rewards"][0].sum().item(), 1.5)


def test_an_episode_converts_to_and_from_chat_messages_in_one_place():
    from lmrl.data import Episode, Turn

    messages = [{"role": "system", "content": "Sell."}, {"role": "user", "content": "$10?"},
                {"role": "assistant", "content": "No.", "reward": 0.5}, {"role": "user", "content": "$12?"},
                {"role": "assistant", "content": "Deal.", "reward": None}]
    episode = Episode.from_messages(messages, done=False)
    assert episode.turns[2] == Turn("assistant", "No.", 0.5) and episode.turns[4].reward == 0.0
    assert not episode.done and episode.total_reward == 0.5
    assert episode.messages() == [{"role": m["role"], "content": m["content"]} for m in messages]
    with_rewards = episode.messages(rewards=True)
    assert [m["reward"] for m in with_rewards] == [0.0, 0.0, 0.5, 0.0, 0.0]
    assert Episode.from_messages(with_rewards) == Episode(episode.turns)


# ---------------------------------------------------------------- unlabeled episodes (UDS)
UNLABELED = {"messages": [{k: v for k, v in m.items() if k != "reward"} for m in MESSAGES], "labeled": False}


def test_an_unlabeled_row_is_refused_unless_a_reward_for_it_is_given():
    with pytest.raises(ValueError, match=r"row 7: the row is unlabeled .*Set unlabeled_reward"):
        validate_row(UNLABELED, 7)
    episode = validate_row(UNLABELED, 7, unlabeled_reward=0.0)
    assert [t.reward for t in episode.turns] == [0.0, 0.0, 0.0, 0.0]
    episode = validate_row(UNLABELED, 7, unlabeled_reward=-1.0)  # each assistant turn, as UDS labels each step
    assert [t.reward for t in episode.turns] == [0.0, -1.0, 0.0, -1.0]
    assert validate_row({"messages": MESSAGES}, 0, unlabeled_reward=-1.0).total_reward == 1.5  # labelled: untouched


def test_an_unlabeled_row_may_carry_no_reward_and_its_marker_is_a_boolean():
    with pytest.raises(ValueError, match=r"row 2: field 'messages\[1\].reward' is set on a row marked 'labeled': false"):
        validate_row({"messages": MESSAGES, "labeled": False}, 2, unlabeled_reward=0.0)
    with pytest.raises(ValueError, match="row 2: field 'reward' is set"):
        validate_row({**UNLABELED, "reward": 1.0}, 2, unlabeled_reward=0.0)
    with pytest.raises(ValueError, match="row 3: field 'labeled' must be true or false, got 'no'"):
        validate_row({**UNLABELED, "labeled": "no"}, 3)


def test_unlabel_keeps_the_same_labelled_share_whether_the_rest_is_kept_or_dropped():
    from lmrl.data import is_unlabeled, unlabel

    rows = [{"messages": MESSAGES, "id": i} for i in range(20)]
    kept, dropped = unlabel(rows, 0.25, seed=3), unlabel(rows, 0.25, seed=3, keep_unlabeled=False)
    labelled = [r["id"] for r in kept if not is_unlabeled(r)]
    assert len(kept) == 20 and len(labelled) == 5 and labelled == [r["id"] for r in dropped]
    assert all("reward" not in m for r in kept if is_unlabeled(r) for m in r["messages"])
    assert labelled != [r["id"] for r in unlabel(rows, 0.25, seed=4) if not is_unlabeled(r)]
    with pytest.raises(ValueError, match="labeled_share must be in"):
        unlabel(rows, 0.0)


def test_prepare_dataset_gives_unlabeled_episodes_their_reward_from_a_jsonl_file(tmp_path, plain_tokenizer):
    """Through a file, as `load_dataset` reads it (absent fields come back as null)."""
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"messages": MESSAGES}) + "\n" + json.dumps(UNLABELED) + "\n")
    with pytest.raises(ValueError, match="mixed.jsonl: line 2: the row is unlabeled"):
        prepare_dataset(str(path), plain_tokenizer)
    data = prepare_dataset(str(path), plain_tokenizer, unlabeled_reward=-0.5)
    assert data["returns"] == [1.5, -1.0]
    assert sum(data[1]["rewards"]) == -1.0 and sum(data[0]["rewards"]) == 1.5


def test_the_normalized_score_anchors_on_the_labelled_episodes_only(tmp_path):
    from lmrl.evaluation import dataset_returns

    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"messages": MESSAGES}) + "\n" + json.dumps(UNLABELED) + "\n")
    assert dataset_returns(str(path)) == [1.5]
    path.write_text(json.dumps(UNLABELED) + "\n")
    with pytest.raises(ValueError, match="every episode is unlabeled"):
        dataset_returns(str(path))
