"""The buyer's side of a negotiation, played by a person against the trained seller (`lmrl play`).

The listing and the buyer's budget are drawn as the simulator draws them (`NegotiationEnv.reset`);
the person writes the buyer's lines. Each line is an offer with a price ("Would you take $150?"),
an acceptance of the seller's last price ("deal", or an offer at or above it), or a walk-away
("bye", "no deal"). A deal closes only when one side accepts the other's price: the person accepts
the seller's, or the seller accepts the person's offer ("Deal."); a lower price from the seller is a
new price the person may accept, not a sale. Offers above the budget are refused. The episode is
scored by the task's reward: sale price / list price, or -0.5 for no deal.
"""

from __future__ import annotations

import re

from lmrl.envs.human import UnreadableLine, require_text

from .env import ACCEPT, REFUSE, NegotiationEnv
from .prices import NO_DEAL_REWARD, deal_reward, format_price, parse_price

WALK_AWAY = re.compile(r"\b(bye|goodbye|no deal|walk away|not interested|i'?ll pass)\b", re.IGNORECASE)


def example_offer(list_price: float) -> str:
    """A first offer to show as an example: about 60% of the list price, in whole $5."""
    return format_price(max(5, 5 * round(0.6 * list_price / 5)))


class HumanBuyer:
    """A person as the buyer; the agent sells.

    Example:
        ```python
        >>> buyer = HumanBuyer()
        >>> print(buyer.reset(seed=3))  # doctest: +ELLIPSIS
        You are the buyer. For sale: Nintendo Switch with three games, listed at $260. Your budget: $235 ...
        >>> buyer.hear("I can pay $150.")
        (0.0, False, {'offer': 150.0})
        >>> buyer.step("I can do $230.")[:2]  # a price, not a sale: the person decides
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
        self.budget = float(5 * round(self.simulator.reservation / 5))  # the budget the person is told
        self.offer = None  # the buyer's last offer
        self.ask = self.list_price  # the seller's last price
        self.seller_spoke = False
        self.sale_price = None
        return (f"You are the buyer. For sale: {self.simulator.item}, listed at {format_price(self.list_price)}. "
                f"Your budget: {format_price(self.budget)} (the seller does not know it).\n"
                f"{self.how_to()}\n"
                "A deal closes only when one of you accepts the other's price: you say \"deal\" to the seller's "
                "last price (or offer that price or more), or the seller accepts your offer. Offers above your "
                "budget are not sent.\n"
                f"The seller (the agent) scores the sale price divided by the list price, e.g. "
                f"{deal_reward(self.budget, self.list_price):.2f} for a sale at {format_price(self.budget)}; "
                f"when you walk away it scores {NO_DEAL_REWARD:.2f}, less than any sale.")

    def how_to(self) -> str:
        return (f'Make an offer with a price ("Would you take {example_offer(self.list_price)}?"), say "deal" to '
                'accept the seller\'s last price, or "bye" to walk away.')

    def hear(self, text: str) -> tuple[float, bool, dict]:
        text = require_text(text)
        price = parse_price(text)
        leaves = price is None and bool(WALK_AWAY.search(text))
        accepts = price is None and bool(ACCEPT.search(text))
        if (leaves or accepts) and not self.seller_spoke:
            raise UnreadableLine("The seller has not answered yet: open with an offer, e.g. "
                                 f"\"Would you take {example_offer(self.list_price)}?\"")
        if leaves:
            return self._close(None)
        if price is None and not accepts:
            raise UnreadableLine(f"No price in your line, so the seller cannot read it as an offer. {self.how_to()}")
        if accepts or (self.seller_spoke and price >= self.ask - 0.5):  # people quote whole dollars
            if self.ask > self.budget + 0.5:
                raise UnreadableLine(f"The seller's price, {format_price(self.ask)}, is above your budget of "
                                     f"{format_price(self.budget)}: make a lower offer, or say \"bye\" to walk away.")
            return self._close(self.ask)
        if price > self.budget + 0.5:
            raise UnreadableLine(f"{format_price(price)} is above your budget of {format_price(self.budget)}, so it "
                                 "was not sent: offer at most your budget, or say \"bye\" to walk away.")
        self.offer = price
        return 0.0, False, {"offer": price}

    def step(self, reply: str) -> tuple[float, bool, dict]:
        """The seller's reply: accepting the buyer's offer ("Deal.", or "Deal at $X" with X the offer)
        sells at the offer; any other price becomes the seller's price, which the person may accept."""
        self.seller_spoke = True
        price = parse_price(reply)
        accepts = bool(ACCEPT.search(reply))
        info = {"price": price, "invalid": price is None and not accepts and not REFUSE.search(reply)}
        if accepts and self.offer is not None and (price is None or abs(price - self.offer) <= 0.5):
            return self._close(self.offer, info)
        if price is not None:
            self.ask = price
        return 0.0, False, info

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
