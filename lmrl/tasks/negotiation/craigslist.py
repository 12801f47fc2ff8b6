"""Load the CraigslistBargain corpus (He et al. 2018, stanfordnlp/cocoa; used by CHAI, Verma et al.
2022) as lmrl training rows, from the seller's point of view.

Each dialogue becomes one row (the row format of docs/design.md, section 1):

    {"messages": [{"role": "system", "content": <listing prompt>},
                  {"role": "user", "content": <buyer's turn>},
                  {"role": "assistant", "content": <seller's turn>, "reward": 0.0}, ...],
     "done": true, "scenario_id": "S_...", "list_price": 200.0, "deal_price": 180.0}

Mapping:
- the system message is `listing_prompt(title, list price, description)` built from the seller's
  knowledge base (`scenario.kbs[i]` whose `personal.Role` is "seller"); the list price is its
  `item.Price`;
- events follow in order; the seller's become `assistant` messages, the buyer's `user` messages
  (`event.agent` indexes `scenario.kbs`). Consecutive events of one agent merge into one message,
  joined by a single space. A `message` event renders as its stripped text, an `offer` as
  "I offer $180.", `accept` as "I accept.", `reject` as "I reject the offer.", `quit` as "I quit.".
  Empty texts are dropped (and do not split a merged message).

Reward (on the last assistant message; every other assistant message gets 0.0): a deal
(`outcome.reward == 1` and `outcome.offer.price` is a number) earns `deal_reward(price, list price)`
= price / list price; anything else earns `no_deal_reward` (`NO_DEAL_REWARD`, -0.5 by default).
Dialogues where the seller never speaks have no action to learn from: they are skipped and counted
in one logged warning. The file (plain or .gz) is a JSON array, parsed one dialogue at a time
(`iter_json_array`), and rows are yielded as they are made, so memory does not grow with the file. A
malformed dialogue raises `CorpusError` (a `ValueError`) naming the file, the dialogue and the
field; given `on_error`, the error goes there instead and the next dialogue is converted. Malformed
JSON syntax always stops (nothing after it can be trusted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from lmrl.data.corpus import CorpusError, field_pattern, iter_json_array

from .prices import NO_DEAL_REWARD, deal_reward, format_price, listing_prompt

logger = logging.getLogger(__name__)

ROLES = {"seller": "assistant", "buyer": "user"}
FIXED_TEXTS = {"accept": "I accept.", "reject": "I reject the offer.", "quit": "I quit."}
ACTIONS = ("message", "offer", *FIXED_TEXTS)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(value) -> str:
    return "nothing" if value is None else f"{value!r} ({type(value).__name__})"


class _Dialogue:
    """Where we are in the file, to build error messages that name the file, dialogue and field."""

    def __init__(self, path: Path, index: int, uuid=None, text: str = ""):
        self.path, self.index, self.uuid, self.text = path, index, uuid, text

    def error(self, field: str, problem: str, fix: str = "Fix or remove this dialogue.",
              reason: str | None = None) -> CorpusError:
        """`reason` is the kind of problem without this dialogue's values (defaults to `problem`)."""
        where = f"dialogue {self.index}" + (f" (uuid {self.uuid})" if self.uuid is not None else "")
        return CorpusError(f"{self.path}: {where}: field '{field}' {problem}. {fix}", path=self.path, where=where,
                           field=field, reason=field_pattern(f"field '{field}' {reason or problem}"),
                           record={"dialogue": self.text})


def _seller_item(dialogue: dict, at: _Dialogue) -> tuple[list[str], dict]:
    """The role of each kb (indexed by `event.agent`) and the seller's `item`."""
    scenario = dialogue.get("scenario")
    if not isinstance(scenario, dict):
        raise at.error("scenario", f"must be an object with 'kbs', got {_describe(scenario)}",
                       reason="must be an object with 'kbs'")
    kbs = scenario.get("kbs")
    if not isinstance(kbs, list):
        raise at.error("scenario.kbs", f"must be a list of the two agents' knowledge bases, got {_describe(kbs)}",
                       reason="must be a list")
    roles = []
    for i, kb in enumerate(kbs):
        personal = kb.get("personal") if isinstance(kb, dict) else None
        if not isinstance(personal, dict):
            raise at.error(f"scenario.kbs[{i}].personal", "is missing or not an object",
                           'Each kb needs {"personal": {"Role": "seller" or "buyer"}, "item": {...}}.')
        role = personal.get("Role")
        if role not in ROLES:
            raise at.error(f"scenario.kbs[{i}].personal.Role", f"must be 'seller' or 'buyer', got {_describe(role)}",
                           reason="must be 'seller' or 'buyer'")
        roles.append(role)
    if sorted(roles) != ["buyer", "seller"]:
        raise at.error("scenario.kbs", f"must hold exactly one seller and one buyer kb, got roles {roles}",
                       reason="must hold exactly one seller and one buyer kb")
    seller = roles.index("seller")
    item = kbs[seller].get("item")
    if not isinstance(item, dict):
        raise at.error(f"scenario.kbs[{seller}].item", f"must be an object with Title and Price, got {_describe(item)}",
                       reason="must be an object")
    return roles, item


def _listing(item: dict, seller: int, at: _Dialogue) -> tuple[str, float, str]:
    field = f"scenario.kbs[{seller}].item"
    price = item.get("Price")
    if not _is_number(price) or not price > 0:
        raise at.error(f"{field}.Price", f"must be a positive number (the list price), got {_describe(price)}",
                       reason="must be a positive number")
    title = item.get("Title")
    if not isinstance(title, str) or not title.strip():
        raise at.error(f"{field}.Title", f"must be a non-empty string, got {_describe(title)}",
                       reason="must be a non-empty string")
    description = item.get("Description")
    if description is None:
        description = []
    elif isinstance(description, str):
        description = [description]
    if not isinstance(description, list) or not all(isinstance(line, str) for line in description):
        raise at.error(f"{field}.Description", f"must be a list of strings, got {_describe(description)}",
                       reason="must be a list of strings")
    text = " ".join(line.strip() for line in description if line.strip())
    return title.strip(), float(price), text


def _render(event, i: int, n_agents: int, at: _Dialogue) -> tuple[int, str]:
    """(agent, text) of one event."""
    field = f"events[{i}]"
    if not isinstance(event, dict):
        raise at.error(field, f"must be an object with 'action', 'agent' and 'data', got {_describe(event)}",
                       reason="must be an object")
    action = event.get("action")
    if action is None:
        raise at.error(f"{field}.action", "is missing", f"Set it to one of {', '.join(ACTIONS)}.")
    if action not in ACTIONS:
        raise at.error(f"{field}.action", f"is {action!r}, an unknown action",
                       f"Use one of {', '.join(ACTIONS)}, or remove the event.", reason="is an unknown action")
    agent = event.get("agent")
    if not _is_number(agent) or agent != int(agent) or not 0 <= agent < n_agents:
        raise at.error(f"{field}.agent", f"must be an index into scenario.kbs (0 to {n_agents - 1}), "
                                         f"got {_describe(agent)}", reason="must be an index into scenario.kbs")
    data = event.get("data")
    if action == "message":
        if not isinstance(data, str):
            raise at.error(f"{field}.data", f"must be the message text (a string), got {_describe(data)}",
                           reason="must be the message text")
        text = data.strip()
    elif action == "offer":
        if not isinstance(data, dict):
            raise at.error(f"{field}.data", f"must be an object with a numeric 'price', got {_describe(data)}",
                           reason="must be an object with a numeric 'price'")
        price = data.get("price")
        if not _is_number(price):
            raise at.error(f"{field}.data.price", f"must be the offered price (a number), got {_describe(price)}",
                           reason="must be the offered price")
        text = f"I offer {format_price(price)}."
    else:
        text = FIXED_TEXTS[action]
    return int(agent), text


def _deal_price(dialogue: dict, at: _Dialogue) -> float | None:
    outcome = dialogue.get("outcome")
    if outcome is None:
        return None
    if not isinstance(outcome, dict):
        raise at.error("outcome", f"must be an object (or null for no deal), got {_describe(outcome)}",
                       reason="must be an object or null")
    offer = outcome.get("offer")
    if offer is None:
        return None
    if not isinstance(offer, dict):
        raise at.error("outcome.offer", f"must be an object with 'price' (or null for no deal), got {_describe(offer)}",
                       reason="must be an object or null")
    price = offer.get("price")
    if price is not None and not _is_number(price):
        raise at.error("outcome.offer.price", f"must be a number (or null for no deal), got {_describe(price)}",
                       reason="must be a number or null")
    reward = outcome.get("reward")
    if _is_number(reward) and reward == 1 and price is not None:
        return float(price)
    return None


def _convert(dialogue, at: _Dialogue, no_deal_reward: float) -> dict | None:
    """One row, or None when the seller never speaks."""
    roles, item = _seller_item(dialogue, at)
    title, list_price, description = _listing(item, roles.index("seller"), at)
    events = dialogue.get("events")
    if not isinstance(events, list):
        raise at.error("events", f"must be a list of events, got {_describe(events)}", reason="must be a list")
    turns: list[list] = []  # [agent, [texts]]
    for i, event in enumerate(events):
        agent, text = _render(event, i, len(roles), at)
        if not text:
            continue
        if turns and turns[-1][0] == agent:
            turns[-1][1].append(text)
        else:
            turns.append([agent, [text]])
    messages = [{"role": "system", "content": listing_prompt(title, list_price, description)}]
    for agent, texts in turns:
        role = ROLES[roles[agent]]
        message = {"role": role, "content": " ".join(texts)}
        if role == "assistant":
            message["reward"] = 0.0
        messages.append(message)
    actions = [message for message in messages if message["role"] == "assistant"]
    deal_price = _deal_price(dialogue, at)
    if not actions:
        return None
    actions[-1]["reward"] = deal_reward(deal_price, list_price) if deal_price is not None else float(no_deal_reward)
    scenario_id = dialogue.get("scenario_uuid", dialogue["scenario"].get("uuid"))
    return {"messages": messages, "done": True, "scenario_id": scenario_id,
            "list_price": list_price, "deal_price": deal_price}


def iter_craigslist_bargain(path: str | Path, no_deal_reward: float = NO_DEAL_REWARD,
                            on_error: Callable[[CorpusError], None] | None = None) -> Iterator[dict]:
    """Rows (seller's view), one at a time, from a CraigslistBargain JSON file such as `train.json`
    (or its .gz), parsed one dialogue at a time.

    The seller's turns are `assistant` messages, the buyer's `user` messages; the last assistant
    message earns `deal price / list price` on a deal and `no_deal_reward` otherwise. Dialogues in
    which the seller never speaks are skipped with one logged warning at the end.

    Example:
        >>> rows = iter_craigslist_bargain("craigslist/train.json")  # doctest: +SKIP
        >>> next(rows)["messages"][-1]["reward"]  # doctest: +SKIP
        0.9

    Raises:
        ValueError: the file is missing or not JSON (naming the line and column), or its top level is
            not a list; `CorpusError`, a `ValueError` naming the file, the dialogue (index and uuid)
            and the field, for a malformed dialogue, unless `on_error` is given: then it receives the
            error and the dialogue is left out.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file. Pass the path of a CraigslistBargain JSON file "
                         "(e.g. train.json from stanfordnlp/cocoa's craigslistbargain data).")
    skipped, total = [], 0
    for index, dialogue, text in iter_json_array(path, items="dialogues"):
        total += 1
        at = _Dialogue(path, index, dialogue.get("uuid") if isinstance(dialogue, dict) else None, text)
        try:
            if not isinstance(dialogue, dict):
                raise at.error(f"[{index}]", f"must be a dialogue object with 'scenario' and 'events', got "
                                             f"{_describe(dialogue)}", reason="must be a dialogue object")
            row = _convert(dialogue, at, no_deal_reward)
        except CorpusError as error:
            if on_error is None:
                raise
            on_error(error)
            continue
        if row is None:
            skipped.append(dialogue.get("uuid", f"#{index}"))
        else:
            yield row
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
        logger.warning(
            "Skipped %d of %d dialogues in %s because the seller never spoke (no assistant message, so "
            "no action to learn from): %s", len(skipped), total, path, shown,
        )


def load_craigslist_bargain(path: str | Path, no_deal_reward: float = NO_DEAL_REWARD) -> list[dict]:
    """Every row of `iter_craigslist_bargain(path, no_deal_reward)` in a list, stopping at the first
    malformed dialogue (for small files; convert big ones with `lmrl convert negotiation`).

    Example:
        >>> rows = load_craigslist_bargain("craigslist/train.json")  # doctest: +SKIP
        >>> rows[0]["messages"][0]["content"]  # doctest: +SKIP
        'You are selling: Trek bike. Listed at $200. Sell it for as much as you can. ...'
        >>> rows[0]["messages"][-1]["reward"], rows[0]["deal_price"]  # doctest: +SKIP
        (0.9, 180.0)
    """
    return list(iter_craigslist_bargain(path, no_deal_reward))


def row_schema():
    """The pyarrow schema of the rows, for Parquet output."""
    import pyarrow as pa

    return pa.schema([
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("reward", pa.float64())]))),
        ("done", pa.bool_()), ("scenario_id", pa.string()), ("list_price", pa.float64()),
        ("deal_price", pa.float64()),
    ])
