"""The row schema (docs/design.md, section 1: Data): one row is one episode.

    {"messages": [{"role": "user", "content": "..."},
                  {"role": "assistant", "content": "...", "reward": 1.0}, ...],
     "done": true}

Assistant messages are actions; `reward` on one is received right after it. A row-level `reward`
is added to the last assistant message. `done=false` marks a truncated episode. Single-turn rows
`{"prompt", "completion", "reward"}` are accepted too. Every malformed row raises a `ValueError`
that names the row (in a file: the file and line) and the field.

Rewards are finite numbers. A message without `reward` earns 0 (an episode's reward is often on its
last assistant message only). `null` is not a reward: in a JSON or JSONL file, `null` as the row's
`reward`, or as the reward of the last assistant message of a row without a row-level reward (where
the episode's outcome is), is an error; drop the key for reward 0, write the reward, or mark the row
`"labeled": false` if its outcome is unknown. `null` on another message reads as no reward, as Arrow
writes a missing field (e.g. `Dataset.to_json`). Rows from Arrow (Parquet, a `Dataset`) or Python (a
list of dicts, perhaps `Dataset.to_list()`) cannot tell `null` from missing: there `None` is no reward.

A JSON or JSONL file is read as the standard writes JSON: `NaN`, `Infinity`, a number beyond a float's
range (`1e400`) or a key given twice in one object is an error naming the line and the field, wherever
in the row it stands; so is a row nested too deeply for Arrow to hold (keep within 32 levels of objects
and lists). In rows given in memory, `float("nan")` or infinity anywhere in a row, or nesting beyond
32 levels, is an error naming the row and the field. CSV files are read as written: `reward`
must be a finite number (empty only on a row whose `labeled` column is false), `done` and `labeled`
true or false, and every other column stays text.

`"labeled": false` marks an episode logged without rewards (it may carry none). Such rows are
refused unless the caller gives `unlabeled_reward`, the reward each of their assistant turns then
gets: 0.0 for UDS (Yu et al., 2022), which labels reward-free data with the task's minimum reward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

ACTION_ROLE = "assistant"
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Turn:
    role: str
    content: str
    reward: float = 0.0

    @property
    def is_action(self) -> bool:
        return self.role == ACTION_ROLE


@dataclass
class Episode:
    """A conversation as turns. The one conversion between this and chat messages (`{"role",
    "content"}` dicts, `"reward"` optional) is `Episode.from_messages(...)` / `episode.messages()`.

    Example:
        ```python
        >>> episode = Episode.from_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
        >>> episode.messages()
        [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
        ```
    """

    turns: list[Turn] = field(default_factory=list)
    done: bool = True

    @classmethod
    def from_messages(cls, messages: list[Mapping], done: bool = True) -> Episode:
        """Turns from chat messages (a missing or null `reward` is 0). Messages are taken as they are:
        check a data row with [`validate_row`] instead, which names the row and field at fault."""
        return cls([Turn(m["role"], m["content"], m.get("reward") or 0.0) for m in messages], done)

    def messages(self, rewards: bool = False) -> list[dict]:
        """The turns as chat messages `{"role", "content"}`, with each turn's `"reward"` when `rewards`."""
        if rewards:
            return [{"role": t.role, "content": t.content, "reward": t.reward} for t in self.turns]
        return [{"role": t.role, "content": t.content} for t in self.turns]

    @property
    def total_reward(self) -> float:
        return sum(turn.reward for turn in self.turns)


def _where(index: int | None) -> str:
    return "row" if index is None else f"row {index}"


def _reward(value, where: str, name: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: field '{name}' must be a number, got {value!r} ({type(value).__name__}).")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{where}: field '{name}' must be a finite number, got {value!r}. Write a finite reward, "
                         "or drop this row.")
    return number


def _messages(value, where: str, name: str, default_role: str) -> list[Turn]:
    if isinstance(value, str):
        return [Turn(default_role, value)]
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{where}: field '{name}' must be a list of messages, got {type(value).__name__}."
        )
    turns = []
    for i, message in enumerate(value):
        field_name = f"{name}[{i}]"
        if not isinstance(message, Mapping):
            raise ValueError(
                f"{where}: field '{field_name}' must be an object with 'role' and 'content', "
                f"got {type(message).__name__}."
            )
        role = message.get("role")
        if role is None:
            raise ValueError(f"{where}: field '{field_name}.role' is missing; use one of {', '.join(ROLES)}.")
        if role not in ROLES:
            raise ValueError(
                f"{where}: field '{field_name}.role' is {role!r}, an unknown role; use one of {', '.join(ROLES)}."
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise ValueError(
                f"{where}: field '{field_name}.content' must be a string, got "
                f"{'nothing' if content is None else type(content).__name__}."
            )
        reward = _reward(message.get("reward"), where, f"{field_name}.reward")
        if reward != 0.0 and role != ACTION_ROLE:
            raise ValueError(
                f"{where}: field '{field_name}.reward' is set on a {role!r} message; rewards follow "
                "actions, so put it on the assistant message before it."
            )
        turns.append(Turn(role, content, reward))
    return turns


def is_unlabeled(row: Mapping) -> bool:
    """Whether a row is marked as logged without rewards (`"labeled": false`)."""
    return row.get("labeled") is False


def validate_row(row, index: int | None = None, unlabeled_reward: float | None = None, *,
                 where: str | None = None) -> Episode:
    """Check one row and return it as an [`Episode`]; raise `ValueError` naming row and field.
    An unlabeled row (`"labeled": false`) needs `unlabeled_reward`, which each of its assistant
    turns gets. `where` names the row in errors instead of `row {index}` (e.g. "data.jsonl: line 3")."""
    where = where or _where(index)
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected an object with 'messages', got {type(row).__name__}.")
    if row.get("labeled") is not None and not isinstance(row["labeled"], bool):
        raise ValueError(f"{where}: field 'labeled' must be true or false, got {row['labeled']!r}.")
    if row.get("messages") is not None:
        turns = _messages(row["messages"], where, "messages", default_role="user")
    elif row.get("prompt") is not None or row.get("completion") is not None:
        for name in ("prompt", "completion"):
            if row.get(name) is None:
                raise ValueError(f"{where}: field '{name}' is missing; prompt/completion rows need both.")
        turns = _messages(row["prompt"], where, "prompt", default_role="user")
        turns += _messages(row["completion"], where, "completion", default_role=ACTION_ROLE)
    else:
        keys = ", ".join(sorted(map(str, row.keys()))) or "none"
        raise ValueError(
            f"{where}: field 'messages' is missing (keys found: {keys}). A row is either "
            "{'messages': [...]} or {'prompt': ..., 'completion': ...}."
        )
    if not turns:
        raise ValueError(f"{where}: field 'messages' is empty; an episode needs at least one assistant turn.")
    actions = [i for i, turn in enumerate(turns) if turn.is_action]
    if not actions:
        raise ValueError(
            f"{where}: field 'messages' has no assistant turn, so there is no action to learn from."
        )
    if is_unlabeled(row):
        rewarded = [f"messages[{i}].reward" for i, m in enumerate(row.get("messages") or []) if isinstance(m, Mapping)
                    and m.get("reward") is not None] + (["reward"] if row.get("reward") is not None else [])
        if rewarded:
            raise ValueError(f"{where}: field '{rewarded[0]}' is set on a row marked 'labeled': false; an unlabeled "
                             "episode carries no reward. Drop the reward or the marker.")
        if unlabeled_reward is None:
            raise ValueError(f"{where}: the row is unlabeled ('labeled': false), so it has no reward to learn from. "
                             "Set unlabeled_reward (e.g. 0.0: UDS labels reward-free episodes with the minimum "
                             "reward) to give each of its assistant turns that reward, or drop the row.")
        for i in actions:
            turns[i].reward = float(unlabeled_reward)
    row_reward = _reward(row.get("reward"), where, "reward")
    turns[actions[-1]].reward += row_reward

    done = row.get("done")
    if done is None:
        done = True
    if not isinstance(done, bool):
        raise ValueError(f"{where}: field 'done' must be true or false, got {done!r}.")
    return Episode(turns=turns, done=done)


def null_outcome(row: Mapping) -> str | None:
    """The field holding a `null` where a labelled row's outcome is: the row's `reward`, or (without a
    row-level reward) the last assistant message's `reward`; None if there is none. Only JSON text tells
    `null` from a missing key (see the module docstring), so the file readers call this."""
    if is_unlabeled(row):
        return None
    if "reward" in row:
        return "reward" if row["reward"] is None else None
    for name in ("messages", "completion"):
        messages = row.get(name)
        if isinstance(messages, (list, tuple)):
            actions = [i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == ACTION_ROLE]
            if actions and "reward" in messages[actions[-1]] and messages[actions[-1]]["reward"] is None:
                return f"{name}[{actions[-1]}].reward"
    return None


def unlabel(rows: list[dict], labeled_share: float, seed: int = 0, keep_unlabeled: bool = True) -> list[dict]:
    """A labelled share of `rows` and the rest as if logged without rewards: a random
    `1 - labeled_share` of the episodes lose every reward and are marked `"labeled": false`
    (`keep_unlabeled=False` drops them instead, leaving the labelled share alone). The same seed
    picks the same labelled episodes either way, so the two datasets compare like for like."""
    import random

    if not 0.0 < labeled_share <= 1.0:
        raise ValueError(f"labeled_share must be in (0, 1], got {labeled_share}.")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    labeled = set(order[: max(1, round(labeled_share * len(rows)))])
    out = []
    for i, row in enumerate(rows):
        if i in labeled:
            out.append(row)
        elif keep_unlabeled:
            stripped = {k: v for k, v in row.items() if k != "reward"}
            stripped["messages"] = [{k: v for k, v in m.items() if k != "reward"} for m in row["messages"]]
            out.append({**stripped, "labeled": False})
    return out


USER_SIDE_SYSTEM = "You are the user in this conversation. Reply as the user would."


def user_side(messages: list[Mapping], system: str | None = USER_SIDE_SYSTEM) -> list[dict]:
    """The other side of a conversation, to train or query a user model: the user's messages become
    the assistant's (the actions) and the agent's become the user's; the agent's system message (its
    private context, e.g. a flight table) is dropped and `system` put in its place; rewards are dropped.

    Example:
        ```python
        >>> user_side([{"role": "system", "content": "Table ..."}, {"role": "user", "content": "Hi, I need a flight."},
        ...            {"role": "assistant", "content": "Where from?", "reward": 0.0}], system=None)
        [{'role': 'assistant', 'content': 'Hi, I need a flight.'}, {'role': 'user', 'content': 'Where from?'}]
        ```
    """
    swap = {"user": "assistant", "assistant": "user"}
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": swap.get(m["role"], m["role"]), "content": m["content"]}
                  for m in messages if m["role"] != "system"]
