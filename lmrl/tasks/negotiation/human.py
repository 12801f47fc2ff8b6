"""The buyer's side of a negotiation, played by a person against the trained seller (`lmrl play`).

The listing and the buyer's budget are drawn as the simulator draws them (`NegotiationEnv.reset`);
the person writes the buyer's lines. Each line is an offer with a price ("Would you take $150?"),
an acceptance of the seller's last price ("deal", or an offer at or above it), or a walk-away
("bye", "no deal"). The seller's replies are read by the simulator's rule (`read_seller`), and the
episode is scored by the task's reward: sale price / list price, or -0.5 for no deal.
"""

from __future__ import annotations

import re

from lmrl.envs.human import UnreadableLine, require_text

from .env import ACCEPT, NegotiationEnv, read_seller
from .prices import NO_DEAL_REWARD, deal_reward, format_price, parse_price

WALK_AWAY = re.compile(r"\b(bye|goodbye|no deal|walk away|not interested|i'?ll pass)\b", re.IGNORECASE)
HOW_TO = ('Make an offer with a price ("Would you take $150?"), say "deal" to accept the seller\'s last '
          'price, or "bye" to walk away.')


class HumanBuyer:
    """A person as the buyer; the agent sells.

    Example:
        ```python
        >>> buyer = HumanBuyer()
        >>> print(buyer.reset(seed=3))  # doctest: +ELLIPSIS
        You are the buyer. For sale: Nintendo Switch with three games, listed at $260. Your budget: $235 ...
        >>> buyer.hear("I can pay $150.")
        (0.0, False, {'offer': 150.0})
        >>> buyer.step("I can do $230.")[:2]
        (0.0, False)
        >>> buyer.hear("deal")[:2]
        (0.8846153846153846, True)
        ```
    """

    def __init__(self, styles: tuple[str, ...] | list[str] | None = None):
        self.simulator = NegotiationEnv(styles)  # draws the listing and budget; a person plays its buyer
        self.system_prompt = ""

    def reset(self, seed: int | None = None) -> str:
        self.simulator.reset(seed)
        self.system_prompt = self.simulator.system_prompt
        self.list_price = self.simulator.list_price
        self.offer = None  # the buyer's last offer
        self.ask = self.list_price  # the seller's last price
        self.seller_spoke = False
        self.sale_price = None
        budget = format_price(5 * round(self.simulator.reservation / 5))
        return (f"You are the buyer. For sale: {self.simulator.item}, listed at {format_price(self.list_price)}. "
                f"Your budget: {budget} (the seller does not know it).\n{HOW_TO}\n"
                f"The seller scores the sale price / the list price, and {NO_DEAL_REWARD} when you walk away.")

    def hear(self, text: str) -> tuple[float, bool, dict]:
        text = require_text(text)
        price = parse_price(text)
        leaves = price is None and bool(WALK_AWAY.search(text))
        accepts = price is None and bool(ACCEPT.search(text))
        if (leaves or accepts) and not self.seller_spoke:
            raise UnreadableLine("The seller has not answered yet: open with an offer, e.g. \"Would you take $100?\" "
                                 "(type /quit to leave).")
        if leaves:
            return self._close(None)
        if accepts or (price is not None and self.seller_spoke and price >= self.ask - 0.5):
            return self._close(self.ask)
        if price is None:
            raise UnreadableLine(f"No price in your line, so the seller cannot read it as an offer. {HOW_TO}")
        self.offer = price
        return 0.0, False, {"offer": price}

    def step(self, reply: str) -> tuple[float, bool, dict]:
        self.seller_spoke = True
        deal, self.ask, info = read_seller(reply, self.offer, self.ask, limit=self.offer)
        return self._close(deal, info) if deal is not None else (0.0, False, info)

    def _close(self, price: float | None, info: dict | None = None) -> tuple[float, bool, dict]:
        self.sale_price = price
        if price is None:
            summary = f"No deal: you walked away. The seller scores {NO_DEAL_REWARD:.2f}."
            return NO_DEAL_REWARD, True, {**(info or {}), "success": False, "summary": summary}
        reward = deal_reward(price, self.list_price)
        summary = (f"Sold at {format_price(price)} (listed at {format_price(self.list_price)}). "
                   f"The seller scores {reward:.2f}.")
        return reward, True, {**(info or {}), "success": True, "summary": summary}

    def row_fields(self) -> dict:
        return {"list_price": self.list_price, "sale_price": self.sale_price}
