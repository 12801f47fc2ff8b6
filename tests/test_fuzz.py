"""Property-based tests: random rows either tokenize correctly or raise a ValueError, never anything
else; a number that is not finite never reaches a loss; every task's environment takes any reply text
an untrained model may emit."""

import json
import math

import pytest
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrl.data import prepare_dataset, tokenize_episode, validate_row
from lmrl.data.schema import ROLES
from lmrl.tasks import get_task

# No '<' or '|': a message that spells a special token ("<|endoftext|>") is tokenized as that token.
TEXT = st.text(st.sampled_from("ab cd.,?!\n\té中😀-+0123456789"), max_size=16)
GOOD_REWARD = st.one_of(st.floats(-10, 10, allow_nan=False), st.integers(-3, 3), st.none())
BAD_REWARD = st.sampled_from([math.nan, math.inf, -math.inf, True, "1.0", [1.0]])


@st.composite
def good_rows(draw):
    """Valid episodes: 1-6 messages of any role, rewards only on replies, at least one reply."""
    messages = []
    for role in draw(st.lists(st.sampled_from([*ROLES, "assistant", "user"]), min_size=1, max_size=6)):
        message = {"role": role, "content": draw(TEXT)}
        if role == "assistant" and draw(st.booleans()):
            message["reward"] = draw(GOOD_REWARD)
        messages.append(message)
    if not any(m["role"] == "assistant" for m in messages):
        messages.insert(draw(st.integers(0, len(messages))), {"role": "assistant", "content": draw(TEXT)})
    row = {"messages": messages}
    if draw(st.booleans()):
        row["reward"] = draw(GOOD_REWARD)
    if draw(st.booleans()):
        row["done"] = draw(st.one_of(st.booleans(), st.none()))
    return row


def _break(row: dict, how: str, i: int, value) -> dict:
    messages = row["messages"]
    message = messages[i % len(messages)]
    if how == "role":
        message["role"] = value
    elif how == "content":
        message["content"] = value
    elif how == "reward":
        message["reward"] = value
    elif how == "not a message":
        messages[i % len(messages)] = value
    elif how == "no reply":
        row["messages"] = [m for m in messages if m["role"] != "assistant"]
    elif how == "no messages":
        row["messages"] = value if value is not None else []
    else:
        row[how] = value
    return row


BROKEN_ROWS = st.builds(
    _break, good_rows(),
    st.sampled_from(["role", "content", "reward", "not a message", "no reply", "no messages", "reward", "done"]),
    st.integers(0, 5),
    st.one_of(BAD_REWARD, st.sampled_from(["robot", None, 3, "hello", "yes", 1, [], {"x": 1}]), TEXT),
)
PROMPT_ROWS = st.fixed_dictionaries(
    {"prompt": st.one_of(TEXT, st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]),
                                                                 "content": TEXT}), max_size=2)),
     "completion": TEXT},
    optional={"reward": st.one_of(GOOD_REWARD, BAD_REWARD)},
)
ROW = st.one_of(good_rows(), good_rows(), PROMPT_ROWS, BROKEN_ROWS,
                st.sampled_from([None, "text", 3, [], {"text": "hi"}, {"prompt": "hi"}]))
FUZZ = settings(max_examples=100, deadline=None, derandomize=True)


def _action_pieces(tokenized, eos: int) -> list[list[int]]:
    """The action tokens, cut after each action's end-of-turn token."""
    pieces, current = [], []
    for token, is_action in zip(tokenized.input_ids, tokenized.action_mask):
        if is_action:
            current.append(token)
            if token == eos:
                pieces.append(current)
                current = []
    assert not current, "action tokens after the last end-of-turn token"
    return pieces


def _check(tokenizer, row, max_length):
    try:
        episode = validate_row(row, 0)
    except ValueError as error:
        assert "row 0" in str(error)
        return
    full = tokenize_episode(tokenizer, episode)
    n = len(full.input_ids)
    assert len(full.action_mask) == len(full.rewards) == n and set(full.action_mask) <= {0, 1}
    actions = [turn for turn in episode.turns if turn.is_action]
    eos = tokenizer.eos_token_id

    # the action mask covers exactly each reply and its end-of-turn token
    pieces = _action_pieces(full, eos)
    decode = lambda ids: tokenizer.decode(ids, clean_up_tokenization_spaces=False)  # noqa: E731
    assert [decode(piece) for piece in pieces] == [turn.content + tokenizer.eos_token for turn in actions]
    # each reward sits on the last token of its reply, nowhere else
    ends = [i for i in range(n) if full.action_mask[i] and full.input_ids[i] == eos]
    assert [full.rewards[i] for i in ends] == [turn.reward for turn in actions]
    assert all(reward == 0.0 for i, reward in enumerate(full.rewards) if i not in set(ends))
    assert math.isclose(sum(full.rewards), episode.total_reward, abs_tol=1e-9)
    assert full.done == episode.done and full.truncated is False
    # the observations are all there, in order
    text, position = decode(full.input_ids), 0
    for turn in episode.turns:
        position = text.find(turn.content, position)
        assert position >= 0
        position += len(turn.content)

    if max_length is not None:
        short = tokenize_episode(tokenizer, episode, max_length)
        assert short.input_ids == full.input_ids[-max_length:]
        assert short.action_mask == full.action_mask[-max_length:] and short.rewards == full.rewards[-max_length:]
        assert short.truncated == (n > max_length)


@FUZZ
@given(row=ROW, max_length=st.one_of(st.none(), st.integers(1, 40)))
def test_random_rows_tokenize_correctly_or_raise_a_value_error_without_a_chat_template(tokenizer, row, max_length):
    _check(tokenizer, row, max_length)


@FUZZ
@given(row=ROW, max_length=st.one_of(st.none(), st.integers(1, 40)))
def test_random_rows_tokenize_correctly_or_raise_a_value_error_with_a_chat_template(chat_tokenizer, row, max_length):
    _check(chat_tokenizer, row, max_length)


REPLY = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "up", "left", "crane", "$-5", "1e309", "accept",
                                                         "book 999", "I can do $180.", "no"]))


@FUZZ
@given(task=st.sampled_from(["maze", "wordle", "negotiation", "flight_booking"]), seed=st.integers(0, 50),
       replies=st.lists(REPLY, min_size=1, max_size=6))
def test_every_task_environment_takes_any_reply_text(task, seed, replies):
    env = get_task(task).make_env("eval")
    assert isinstance(env.reset(seed), str)
    for reply in replies:
        observation, reward, done, info = env.step(reply)
        assert isinstance(observation, str) and isinstance(done, bool) and isinstance(info, dict)
        assert math.isfinite(reward)
        if done:
            break


# -- numbers that are not numbers never reach a loss ------------------------------------------------------

NOT_FINITE_JSON = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1E+309"])
NOT_FINITE_FLOAT = st.sampled_from([math.nan, math.inf, -math.inf, float("1e400"), -float("1e999")])
MARK = "__not_a_number__"


@st.composite
def rows_with_a_bad_number(draw):
    """A valid episode with MARK where a number can stand, and the path of that field."""
    row = draw(good_rows())
    messages = row["messages"]
    i = draw(st.integers(0, len(messages) - 1))
    place = draw(st.sampled_from(["message", "row", "context", "list_price", "message extra", "done"]))
    if place == "message":
        messages[i]["reward"], field = MARK, f"messages[{i}].reward"
    elif place == "message extra":
        messages[i]["meta"], field = {"score": MARK}, f"messages[{i}].meta.score"
    elif place == "context":
        row["context"], field = {"kb": [{"price": 1.0}, {"price": MARK}]}, "context.kb[1].price"
    else:
        field = {"row": "reward"}.get(place, place)
        row[field] = MARK
    return row, field


def _returns_are_finite(data) -> bool:
    return all(map(math.isfinite, data["returns"])) and all(math.isfinite(r) for rs in data["rewards"] for r in rs)


@FUZZ
@given(case=rows_with_a_bad_number(), token=NOT_FINITE_JSON, before=st.integers(0, 2), blank=st.booleans())
def test_a_non_finite_number_anywhere_in_a_jsonl_row_is_refused_naming_line_and_field(
        tokenizer, tmp_path_factory, case, token, before, blank):
    row, field = case
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    lines = [good] * before + ([""] if blank else []) + [json.dumps(row).replace(f'"{MARK}"', token)]
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as error:
        prepare_dataset(str(path), tokenizer)
    assert f"rows.jsonl: line {len(lines)}: field '{field}' is {token}" in str(error.value)


@FUZZ
@given(case=rows_with_a_bad_number(), number=NOT_FINITE_FLOAT, arrow=st.booleans())
def test_a_non_finite_float_in_a_row_given_in_memory_never_reaches_a_loss(tokenizer, case, number, arrow):
    """Rows as dicts are refused, naming the row and the field; rows already in Arrow (a `Dataset`) are
    refused where lmrl reads a number (rewards, done) and train with finite rewards otherwise."""
    row, field = case
    _put(row, field, number)
    rows = [{"messages": [{"role": "assistant", "content": "b", "reward": 1.0}]}, row]
    try:
        data = prepare_dataset(Dataset.from_list(rows) if arrow else rows, tokenizer)
    except ValueError as error:
        assert str(error).startswith(f"row 1: field '{field}' ")
        return
    assert arrow and _returns_are_finite(data)


def _put(row: dict, field: str, value) -> None:
    """Set the value at a path such as "messages[2].meta.score" or "context.kb[1].price"."""
    keys = [int(k) if k.isdigit() else k for k in field.replace("[", ".").replace("]", "").split(".")]
    for key in keys[:-1]:
        row = row[key]
    row[keys[-1]] = value
