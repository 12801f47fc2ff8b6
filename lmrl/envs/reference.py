"""Reference policies: scripted players that place a learner's score (a random player, the data's own
player, the best player), played through the same rollout loop and scorer as a trained model.

A task offers them through `Task.reference_policies(rows, **options)`, `rows` being the behaviour data
of one seed (row dicts), so that a policy made from the data (e.g. tabular Q-learning on its
transitions) sees exactly what the learners see.

`kind` says where a policy's number may go:
- "reference": it uses only what the agent is shown (the conversation), so a learner could match it;
- "upper_bound": it reads something the agent is not shown (e.g. the environment's true state in a
  partially observed task): an oracle, reported in its own section, never ranked beside the learners.
"""

from __future__ import annotations

from dataclasses import dataclass

from .rollout import Policy

KINDS = ("reference", "upper_bound")


@dataclass
class ReferencePolicy:
    """A named scripted policy with what it is and where its number belongs.

    Example:
        ```python
        >>> ReferencePolicy("random", lambda conversations: ["move up"] * len(conversations), "reference",
        ...                 "one of the four moves, uniformly")
        ReferencePolicy(name='random', ..., kind='reference', description='one of the four moves, uniformly')
        ```
    """

    name: str
    policy: Policy
    kind: str
    description: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ReferencePolicy {self.name!r}: kind must be one of {', '.join(KINDS)}, got "
                             f"{self.kind!r} ('upper_bound' when it reads what the agent is not shown).")

    @property
    def upper_bound(self) -> bool:
        return self.kind == "upper_bound"
