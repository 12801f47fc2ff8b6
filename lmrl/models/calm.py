"""CALM's auxiliary outcome head (Snell et al., 2022): attention pooling over the task context.

From the LM's hidden state at the point where the agent is about to act (the query), the head
attends over the hidden states of the context tokens (e.g. the flight table) and predicts the
dialogue's final outcome (which flight, or which flightless action). Trained beside the LM loss,
it pushes the shared trunk to ground the dialogue in the context.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.utils import ModelOutput

from ..compat import enable_activation_checkpointing
from .policy_logits import PolicyLogits

HEAD_WEIGHTS = "outcome_head.safetensors"
HEAD_CONFIG = "outcome_head.json"


class OutcomeHead(nn.Module):
    """`head(hidden [B, T, h], context_mask [B, T], query_index [B]) -> logits [B, num_outcomes]`.

    Example:
        ```python
        >>> head = OutcomeHead(hidden_size=64, num_outcomes=11)
        >>> head(torch.randn(2, 9, 64), torch.ones(2, 9), torch.tensor([8, 5])).shape
        torch.Size([2, 11])
        ```
    """

    def __init__(self, hidden_size: int, num_outcomes: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_outcomes = num_outcomes
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.GELU(),
                                 nn.Linear(hidden_size, num_outcomes))

    def forward(self, hidden: torch.Tensor, context_mask: torch.Tensor, query_index: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        query = self.query(hidden[rows, query_index])  # [B, h]
        scores = torch.einsum("bth,bh->bt", self.key(hidden), query) / math.sqrt(self.hidden_size)  # [B, T]
        mask = context_mask.bool()
        mask = torch.where(mask.any(-1, keepdim=True), mask, torch.ones_like(mask))  # no context: attend to all
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        pooled = torch.einsum("bt,bth->bh", weights, self.value(hidden))  # [B, h]
        return self.out(torch.cat([pooled, query], dim=-1))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / HEAD_WEIGHTS))
        (directory / HEAD_CONFIG).write_text(json.dumps({"hidden_size": self.hidden_size,
                                                         "num_outcomes": self.num_outcomes}))

    @classmethod
    def load(cls, directory: str | Path) -> OutcomeHead:
        directory = Path(directory)
        if not (directory / HEAD_CONFIG).is_file():
            raise ValueError(f"{directory}: no {HEAD_CONFIG}; this is not a CALM checkpoint.")
        head = cls(**json.loads((directory / HEAD_CONFIG).read_text()))
        head.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)))
        return head


@dataclass
class CALMOutput(ModelOutput):
    """`policy_logits` [N, V]: the LM's scores at the N action states (factored when the output layer
    allows, see `PolicyLogits`); `outcome_logits` [B, num_outcomes]; `logits`: the LM's own output
    (last position only when factored), returned so that DDP sees the output layer used."""

    policy_logits: object | None = None
    outcome_logits: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class LMWithOutcomeHead(nn.Module):
    """The module `CALMTrainer` optimizes: a causal LM and its `OutcomeHead`, both used inside one
    `forward`, so that DDP/FSDP see every parameter the loss reaches (a head called from outside the
    wrapped module's forward would get no gradient all-reduce under DDP).
    """

    def __init__(self, lm: nn.Module, outcome_head: OutcomeHead):
        super().__init__()
        self.lm = lm
        self.outcome_head = outcome_head
        self._policy_logits = PolicyLogits()

    @property
    def config(self):
        return self.lm.config

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict | None = None, **options) -> None:
        """Checkpoint the LM's layers (`Trainer` calls this for `activation_checkpointing=True`); `options`
        (`every_n_layers`, `offload`) are transformers' own."""
        enable_activation_checkpointing(self.lm, activation_checkpointing_kwargs, **options)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **options) -> None:
        """The name transformers before 5.23 calls."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **options)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, steps: torch.Tensor,
                context_mask: torch.Tensor, outcome_query: torch.Tensor) -> CALMOutput:
        """`steps` [B, T-1]: the action states whose LM scores the BC loss reads."""
        out, hidden, policy_logits = self._policy_logits(self.lm, steps, input_ids=input_ids,
                                                         attention_mask=attention_mask)
        return CALMOutput(policy_logits=policy_logits, logits=out.logits,
                          outcome_logits=self.outcome_head(hidden, context_mask, outcome_query))
