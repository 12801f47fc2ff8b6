"""Prices in negotiation text, the listing prompt and the reward, shared by the simulator and the
CraigslistBargain loader so generated and human dialogues look and score alike.

Reward (seller's view): a deal at price p for an item listed at L earns `p / L`; no deal earns
`NO_DEAL_REWARD` (-0.5), so walking away is always worse than any sale.
"""

from __future__ import annotations

import re

NO_DEAL_REWARD = -0.5

_PRICE = re.compile(r"\$\s?(\d[\d,]*(?:\.\d+)?)|\b(\d[\d,]*(?:\.\d+)?)\s?(?:dollars|bucks)\b", re.IGNORECASE)


def deal_reward(price: float, list_price: float) -> float:
    """The seller's reward for selling at `price` an item listed at `list_price`."""
    if list_price <= 0:
        raise ValueError(f"The list price must be positive, got {list_price!r}.")
    return float(price) / float(list_price)


def parse_price(text: str) -> float | None:
    """The last price written in `text` ("$180", "$1,200", "150 dollars"), or None."""
    found = None
    for match in _PRICE.finditer(text):
        found = float((match.group(1) or match.group(2)).replace(",", ""))
    return found


def format_price(price: float) -> str:
    return f"${price:,.0f}" if float(price).is_integer() else f"${price:,.2f}"


def listing_prompt(title: str, list_price: float, description: str = "") -> str:
    """The system message the seller sees: what is for sale and at what list price."""
    text = f"You are selling: {title}. Listed at {format_price(list_price)}. Sell it for as much as you can."
    return f"{text} {description.strip()}" if description.strip() else text
