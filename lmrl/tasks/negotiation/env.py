"""A seller negotiating with a rule-based buyer over a listed item (after CraigslistBargain/CHAI).

The buyer has a private reservation price (the most it will pay) and one of three styles that the
seller has to read from how it talks and how it moves:

| style   | reservation (x list) | opening offer | concedes per turn | accepts within      | patience |
|---------|----------------------|---------------|-------------------|---------------------|----------|
| eager   | 0.85 - 1.00          | 0.70 x list   | 50% of the gap    | its reservation     | 6 turns  |
| patient | 0.75 - 0.90          | 0.55 x list   | 25% of the gap    | half-way to it      | 8 turns  |
| stingy  | 0.60 - 0.75          | 0.45 x list   | 20% of the gap    | 30% of the way      | 4 turns  |

Each seller reply is read for a price ("$180", the price slot) or an acceptance ("Deal.").
The buyer accepts any price within its current limit, otherwise counters (moving its offer toward
its reservation) and loses patience; asking above the list price costs an extra turn of patience.
Accepting sells at the buyer's current offer. When patience runs out the buyer walks away.
Reward (seller's view): sale price / list price for a deal, -0.5 for no deal (see `prices`).
A reply with neither a price nor an acceptance nor a refusal is invalid: counted, and the seller
is taken to hold its last price.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .prices import NO_DEAL_REWARD, deal_reward, format_price, listing_prompt, parse_price

ITEMS = [
    ("Trek mountain bike", 200, 600), ("IKEA leather couch", 150, 500), ("iPhone 12, 128 GB", 250, 450),
    ("Sony 55-inch TV", 300, 700), ("oak dining table with four chairs", 150, 450),
    ("Canon DSLR camera with two lenses", 300, 800), ("queen size bed frame", 80, 250),
    ("Nintendo Switch with three games", 180, 320), ("electric scooter", 200, 500),
    ("standing desk", 150, 400), ("vintage record player", 100, 300), ("KitchenAid stand mixer", 120, 300),
    ("acoustic guitar", 100, 400), ("gaming laptop", 500, 1200), ("road bike helmet and lights", 40, 120),
    ("office chair", 60, 200), ("espresso machine", 150, 500), ("bookshelf", 40, 150),
]


@dataclass(frozen=True)
class BuyerStyle:
    reservation: tuple[float, float]
    opening: float
    concession: float
    slack: float
    patience: int
    openers: tuple[str, ...]
    counters: tuple[str, ...]
    deals: tuple[str, ...] = ("Deal, {p} it is.", "Great, {p} works. I'll take it.")
    leaves: tuple[str, ...] = ("That's more than I can pay. I'll look elsewhere.", "Sorry, we're too far apart. Bye.")


STYLES = {
    "eager": BuyerStyle(
        (0.85, 1.0), 0.70, 0.5, 1.0, 6,
        ("Hi! I love the {item}, it's exactly what I need. Would you take {p}?",
         "Hello, is the {item} still available? I really want it. Can you do {p}?"),
        ("I really want it. Could you do {p}?", "I can stretch to {p}. Please?"),
    ),
    "patient": BuyerStyle(
        (0.75, 0.9), 0.55, 0.25, 0.5, 8,
        ("Hi, I'm interested in the {item}. I could offer {p}.", "Hello. Would you consider {p} for the {item}?"),
        ("Hmm, I could go up to {p}.", "Let me think. How about {p}?"),
    ),
    "stingy": BuyerStyle(
        (0.6, 0.75), 0.45, 0.2, 0.3, 4,
        ("{p} for the {item}. That's my offer.", "The {item} isn't worth the list price. {p}, cash."),
        ("That's way too much. {p}, take it or leave it.", "Too expensive. {p} is all I'll pay."),
    ),
}

ACCEPT = re.compile(r"\b(deal|accept|agreed|sold|it's yours|you got it|works for me)\b", re.IGNORECASE)
REFUSE = re.compile(r"\b(no|sorry|can't|cannot|firm|best|lowest|won't)\b", re.IGNORECASE)


def read_seller(text: str, offer: float, ask: float, limit: float) -> tuple[float | None, float, dict]:
    """A seller's reply to a buyer who offers `offer` and accepts up to `limit`: (the sale price when
    the reply closes a deal, else None; the seller's ask after it; info with the price read and whether
    the reply is invalid). Accepting sells at the buyer's offer; a price within the limit sells at it.

    Example:
        >>> read_seller("I can do $110.", offer=80, ask=150, limit=100)
        (None, 110.0, {'price': 110.0, 'invalid': False})
        >>> read_seller("Deal.", offer=80, ask=150, limit=100)[0]
        80
    """
    price = parse_price(text)
    accepts = bool(ACCEPT.search(text))
    info = {"price": price, "invalid": price is None and not accepts and not REFUSE.search(text)}
    if accepts and (price is None or price <= offer):
        return (offer if price is None else price), ask, info
    ask = price if price is not None else ask
    return (ask if ask <= limit + 0.5 else None), ask, info  # within half a dollar: people quote whole dollars


def _round(price: float) -> float:
    return float(max(5, 5 * round(price / 5)))


class NegotiationEnv:
    """The seller's side of a negotiation against a simulated buyer.

    Example:
        ```python
        >>> env = NegotiationEnv()
        >>> env.reset(seed=3)
        'Hi, I'm interested in the office chair. I could offer $70.'
        >>> env.step("I can do $110.")
        ('Hmm, I could go up to $85.', 0.0, False, {'price': 110.0, ...})
        ```
    """

    def __init__(self, styles: tuple[str, ...] | list[str] | None = None):
        styles = tuple(styles or STYLES)
        unknown = [s for s in styles if s not in STYLES]
        if unknown:
            raise ValueError(f"Unknown buyer style(s) {unknown}; choose from {', '.join(STYLES)}.")
        self.styles = styles
        self.system_prompt = ""

    def reset(self, seed: int | None = None) -> str:
        rng = random.Random(seed)
        self.rng = rng
        self.item, low, high = rng.choice(ITEMS)
        self.list_price = float(10 * round(rng.uniform(low, high) / 10))
        self.style_name = rng.choice(self.styles)
        self.style = STYLES[self.style_name]
        self.reservation = self.list_price * rng.uniform(*self.style.reservation)
        self.offer = min(_round(self.list_price * self.style.opening), _round(self.reservation))
        self.ask = self.list_price
        self.patience = self.style.patience
        self.done = False
        self.system_prompt = listing_prompt(self.item, self.list_price)
        return rng.choice(self.style.openers).format(item=self.item, p=format_price(self.offer))

    def limit(self) -> float:
        """The highest price the buyer accepts right now."""
        return self.offer + self.style.slack * (self.reservation - self.offer)

    def _close(self, price: float | None, info: dict) -> tuple[str, float, bool, dict]:
        self.done = True
        if price is None:
            return self.rng.choice(self.style.leaves), NO_DEAL_REWARD, True, {**info, "success": False, "deal": None}
        text = self.rng.choice(self.style.deals).format(p=format_price(price))
        return text, deal_reward(price, self.list_price), True, {**info, "success": True, "deal": price}

    def step(self, text: str) -> tuple[str, float, bool, dict]:
        if self.done:
            raise RuntimeError("The negotiation is over; call reset() first.")
        deal, self.ask, info = read_seller(text, self.offer, self.ask, self.limit())
        if deal is not None:
            return self._close(deal, info)
        self.patience -= 2 if self.ask > self.list_price else 1
        if self.patience <= 0:
            return self._close(None, info)
        self.offer = min(_round(self.offer + self.style.concession * (self.reservation - self.offer)), self.ask)
        return self.rng.choice(self.style.counters).format(p=format_price(self.offer)), 0.0, False, info
