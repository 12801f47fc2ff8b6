"""Numeric features of a seller reply for the CHAI critic: prices relative to the list price.

The critic also sees LM embeddings of the context and the reply; these features make the price
slot explicit, which embeddings of digits convey poorly.
"""

from __future__ import annotations

import re

from .env import ACCEPT
from .prices import parse_price

_LISTED = re.compile(r"Listed at \$([\d,]+(?:\.\d+)?)")
FEATURE_NAMES = ("reply_price", "reply_accepts", "reply_has_price", "buyer_offer", "buyer_opening",
                 "last_ask", "gap", "seller_turns")


def highest_price(messages: list[dict], reply: str) -> float:
    """The task's rank rule: a reply's price feature alone (the price it asks, the buyer's offer if it
    accepts, the last ask if it names none), so that ranking keeps the proposal asking the most."""
    return negotiation_features(messages, reply)[0]


def negotiation_features(messages: list[dict], reply: str) -> list[float]:
    """Features of `reply` in the conversation `messages` (system listing first), prices divided by
    the list price (clipped to [0, 3]): the price the reply asks (the buyer's offer if it accepts), whether it accepts,
    whether it names a price, the buyer's latest and opening offers, the seller's last ask, the gap
    between the reply's price and the buyer's offer, and the number of seller turns so far / 10."""
    listed = next((_LISTED.search(m["content"]) for m in messages if m["role"] == "system"), None)
    list_price = float(listed.group(1).replace(",", "")) if listed else None
    buyer = [p for m in messages if m["role"] == "user" and (p := parse_price(m["content"])) is not None]
    asks = [p for m in messages if m["role"] == "assistant" and (p := parse_price(m["content"])) is not None]
    scale = list_price or (max(buyer + asks) if buyer + asks else 1.0)
    offer = buyer[-1] if buyer else 0.0
    last_ask = asks[-1] if asks else (list_price or scale)
    price = parse_price(reply)
    accepts = bool(ACCEPT.search(reply)) and (price is None or price <= offer)
    reply_price = offer if accepts and price is None else (price if price is not None else last_ask)
    ratio = lambda price: min(max(price / scale, 0.0), 3.0)  # noqa: E731  (garbage prices stay bounded)
    return [
        ratio(reply_price),
        float(accepts),
        float(price is not None),
        ratio(offer),
        ratio(buyer[0] if buyer else 0.0),
        ratio(last_ask),
        ratio(reply_price) - ratio(offer),
        sum(m["role"] == "assistant" for m in messages) / 10,
    ]
