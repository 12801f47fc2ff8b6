"""The text-environment protocol every task implements (docs/design.md, section 6: Tasks)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TextEnv(Protocol):
    """A turn-based text environment: the agent's replies are actions, the env's texts observations.

    `reset(seed)` starts an episode and returns the first observation (a user message).
    `step(text)` applies the agent's reply and returns `(observation, reward, done, info)`; an
    invalid reply is handled as the task defines (typically a penalty and the episode goes on),
    never an exception. `system_prompt` (optional attribute, read after `reset`) is sent before the first observation.
    """

    def reset(self, seed: int | None = None) -> str: ...

    def step(self, text: str) -> tuple[str, float, bool, dict[str, Any]]: ...
