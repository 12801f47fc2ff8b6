"""Training-step variants: BC, ILQL with tied / untied heads, and the original separate-trunk layout.

Every variant is one optimizer step as lmrl's trainers take it: forward, loss, backward, AdamW step
(and, for ILQL, the Polyak update of the targets), on a batch whose second half of every row is the
agent's action, rewarded at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..losses import bc_loss, ilql_loss
from ..models import AutoModelForCausalLMWithILQLHeads
from ..models.policy_logits import PolicyLogits
from .paper_layout import SeparateTrunksILQL

ILQL_LOSS_KWARGS = {"tau": 0.7, "gamma": 0.99, "cql_weight": 0.1, "bc_weight": 1.0}  # ILQLConfig's defaults
POLYAK_ALPHA = 0.005
BC_DEFAULT = "BC (lmrl default: CE materialized or chunked by size)"


@dataclass
class TrainVariant:
    """One way of training: `step()` = `backward()` (forward, loss, backward) + `update()` (optimizer step,
    target update) on `modules` (what its memory counts)."""

    label: str
    backward: Callable[[], None]
    update: Callable[[], None]
    modules: list[nn.Module]
    optimizer: torch.optim.Optimizer

    def step(self) -> None:
        self.backward()
        self.update()


def training_batch(batch: int, length: int, vocab_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random tokens; the second half of every row is the agent's action, rewarded at the end."""
    action_mask = torch.zeros(batch, length, dtype=torch.long)
    action_mask[:, length // 2 :] = 1
    rewards = torch.zeros(batch, length)
    rewards[:, -1] = torch.randn(batch)
    tensors = {"input_ids": torch.randint(0, vocab_size, (batch, length)), "attention_mask": torch.ones_like(action_mask),
               "action_mask": action_mask, "rewards": rewards, "dones": torch.ones(batch)}
    return {k: v.to(device) for k, v in tensors.items()}


def _variant(label: str, modules: list[nn.Module], loss_fn: Callable[[], torch.Tensor],
             after_step: Callable[[], None] | None = None, optimizer: torch.optim.Optimizer | None = None
             ) -> TrainVariant:
    """`optimizer`: another variant's AdamW over the same parameters (one state serves both)."""
    if optimizer is None:
        params = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
        optimizer = torch.optim.AdamW(params, lr=1e-5)

    def update() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step()

    return TrainVariant(label, lambda: loss_fn().backward(), update, modules, optimizer)


def bc(base: nn.Module, batch: dict, chunk_size: int | None = None, optimizer=None) -> TrainVariant:
    """lmrl's BC step (BCTrainer.compute_loss: the CE materialized when it fits the default memory budget, else
    chunked and fused); `chunk_size=0`: the plain materialized logits + CE."""
    steps = batch["action_mask"][:, 1:].bool()
    actions = batch["input_ids"][:, 1:][steps]
    policy_logits = PolicyLogits()

    def loss() -> torch.Tensor:
        _, _, logits = policy_logits(base, steps, chunk_size == 0, input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"])
        return bc_loss(logits, actions, chunk_size=chunk_size)

    label = "BC, logits materialized (plain HF)" if chunk_size == 0 else BC_DEFAULT
    return _variant(label, [base], loss, optimizer=optimizer)


def ilql(model: AutoModelForCausalLMWithILQLHeads, batch: dict, label: str, chunk_size: int | None = None,
         optimizer=None) -> TrainVariant:
    """lmrl's ILQL step (ILQLTrainer.compute_loss + the target update callback)."""

    def loss() -> torch.Tensor:
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        action_mask=batch["action_mask"], full_logits=chunk_size == 0)
        return ilql_loss(outputs, **_loss_inputs(batch), **ILQL_LOSS_KWARGS, chunk_size=chunk_size)[0]

    return _variant(label, [model], loss, lambda: model.update_target_heads(POLYAK_ALPHA), optimizer)


def separate_trunks(layout: SeparateTrunksILQL, batch: dict) -> TrainVariant:
    """The original ILQL layout (see paper_layout.py), with lmrl's loss on its materialized logits."""

    def loss() -> torch.Tensor:
        outputs = layout(batch["input_ids"], batch["attention_mask"], batch["action_mask"])
        return ilql_loss(outputs, **_loss_inputs(batch), **ILQL_LOSS_KWARGS, chunk_size=0)[0]

    modules = [*layout.trainable(), layout.target_trunk, layout.target_q_heads]
    return _variant("ILQL, separate policy/value/target trunks, untied heads (paper layout)", modules, loss,
                    lambda: layout.update_targets(POLYAK_ALPHA))


def _loss_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "action_mask", "rewards", "dones")}


def wrap(base: nn.Module, head_type: str, beta: float, guidance_top_k: int, head_hidden_size: int | None = None
         ) -> AutoModelForCausalLMWithILQLHeads:
    """Fresh ILQL heads on `base` (shared, not copied)."""
    return AutoModelForCausalLMWithILQLHeads.from_pretrained(base, head_type=head_type, beta=beta,
                                                             guidance_top_k=guidance_top_k,
                                                             head_hidden_size=head_hidden_size)
