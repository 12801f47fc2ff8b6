"""The other side of a task, played by a person (`lmrl play`): the negotiation's buyer, the flight
booking's customer, or the user of a free chat.

A task's env scripts that side; a human side lets a person take it instead. The task's own rules
still score the episode (a sale price read from the conversation, a booking), so a played episode is
a training row like any other (docs/design.md, section 1: Data).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class UnreadableLine(ValueError):
    """The person's line cannot be read by the task (an empty line, an offer without a price); the
    message says what to write instead, and the person gets another try."""


@runtime_checkable
class HumanSide(Protocol):
    """The side of a dialogue a person plays; the agent plays the other one.

    `reset(seed)` draws the episode and returns the briefing shown to the person: their role, what
    they know (the listing, the trip they want) and the rules in plain words (what ends the episode,
    how the agent is scored); `system_prompt` is then the agent's context.
    `hear(text)` reads the person's line and returns `(reward, done, info)`: a line can end the
    episode (accepting a price, walking away), and its reward is the agent's, added to the agent's
    last reply. A line the task cannot read raises [`UnreadableLine`]. `step(reply)` scores the
    agent's reply by the task's rules, as `TextEnv.step` does, without an observation: the person
    writes it. When an episode ends, `info["summary"]` says the outcome in words. `row_fields()`
    are the task's fields kept with the training row. `env` (optional) is the task's environment
    in the same state, for planners that simulate the user on copies of it.
    """

    system_prompt: str

    def reset(self, seed: int | None = None) -> str: ...

    def hear(self, text: str) -> tuple[float, bool, dict[str, Any]]: ...

    def step(self, reply: str) -> tuple[float, bool, dict[str, Any]]: ...

    def row_fields(self) -> dict: ...


def require_text(text: str) -> str:
    """The line without surrounding blanks; an empty one is unreadable."""
    text = text.strip()
    if not text:
        raise UnreadableLine("Your line is empty: write a message to the agent.")
    return text


class FreeChat:
    """A free chat with a model that has no task: nothing is scored, and the person ends the
    episode ([`lmrl.play.PlaySession`] reads `/end`; it never reaches the model).

    Example:
        ```python
        >>> chat = FreeChat()
        >>> chat.reset(0)
        'Free chat: the model has no task, so nothing is scored. Type /end when you are done.'
        >>> chat.hear("Hello!")
        (0.0, False, {})
        ```
    """

    system_prompt = ""

    def reset(self, seed: int | None = None) -> str:
        return "Free chat: the model has no task, so nothing is scored. Type /end when you are done."

    def hear(self, text: str) -> tuple[float, bool, dict[str, Any]]:
        require_text(text)
        return 0.0, False, {}

    def step(self, reply: str) -> tuple[float, bool, dict[str, Any]]:
        return 0.0, False, {}

    def row_fields(self) -> dict:
        return {}
