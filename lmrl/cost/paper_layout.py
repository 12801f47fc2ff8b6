"""The original ILQL layout, rebuilt for the benchmark only: three trunks and untied vocabulary heads.

Snell et al. 2022's code (Sea-Snell/Implicit-Language-Q-Learning, `PerTokenIQL` with `double_q`,
`seperate_policy` and `seperate_target`) keeps
- a policy LM (trained by BC; its LM head gives pi_beta),
- a value trunk, a copy of the LM whose last hidden state feeds two untied Q heads (MLP h -> 2h -> V)
  and the V head (MLP h -> 2h -> 1),
- a target trunk, a third copy that is never trained: it and the target Q heads follow the value
  trunk and the Q heads by Polyak averaging,
and computes Q over the whole vocabulary at the action states, for the CQL term and, under no_grad,
for the target Q it gathers from. The losses here are lmrl's (`ilql_loss`, same terms) on the
materialized logits. One saving over the reference: the value and target trunks skip their unused
LM logits (`logits_to_keep=1`), so this layout's cost is, if anything, understated.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
from torch import nn

from ..models.heads import UntiedQHead, ValueHead


class SeparateTrunksILQL(nn.Module):
    """Policy LM `base` (shared, not copied) + value trunk + frozen target trunk, untied Q heads."""

    def __init__(self, base: nn.Module, num_q_heads: int = 2):
        super().__init__()
        hidden = base.config.get_text_config().hidden_size
        vocab = base.get_output_embeddings().weight.shape[0]
        self.policy = base
        self.value_trunk = copy.deepcopy(base)
        self.target_trunk = copy.deepcopy(base).requires_grad_(False)
        self.q_heads = nn.ModuleList(UntiedQHead(hidden, vocab) for _ in range(num_q_heads))
        self.target_q_heads = copy.deepcopy(self.q_heads).requires_grad_(False)
        self.v_head = ValueHead(hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, action_mask: torch.Tensor):
        """What `ilql_loss` reads, with Q, target Q and pi_beta materialized over the vocabulary."""
        steps = action_mask[:, 1:].bool()  # [B, T-1]
        actions = input_ids[:, 1:][steps][:, None]  # [N, 1]
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "output_hidden_states": True}
        policy_logits = self.policy(**inputs).logits[:, :-1][steps]  # [N, V]
        hidden = self.value_trunk(**inputs, logits_to_keep=1).hidden_states[-1]  # [B, T, h]
        q_logits = torch.stack([head(hidden[:, :-1][steps]) for head in self.q_heads])  # [K, N, V]
        with torch.no_grad():
            target_hidden = self.target_trunk(**inputs, logits_to_keep=1).hidden_states[-1][:, :-1][steps]
            target_q = torch.stack([head(target_hidden) for head in self.target_q_heads])  # [K, N, V]
        return SimpleNamespace(
            q_values=_at_steps(q_logits.gather(-1, actions.expand(len(q_logits), -1, -1)).squeeze(-1), steps),
            target_q_values=_at_steps(target_q.gather(-1, actions.expand(len(target_q), -1, -1)).squeeze(-1), steps),
            v_values=self.v_head(hidden),  # [B, T]
            q_logits=q_logits,
            policy_logits=policy_logits,
        )

    @torch.no_grad()
    def update_targets(self, alpha: float) -> None:
        """Polyak step of the target trunk and target Q heads, as the reference's `soft_update`."""
        for target, online in ((self.target_trunk, self.value_trunk), (self.target_q_heads, self.q_heads)):
            torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), alpha)

    def trainable(self) -> list[nn.Module]:
        return [self.policy, self.value_trunk, self.q_heads, self.v_head]


def _at_steps(per_action: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """[K, N] values at the action steps -> [K, B, T-1] (zero elsewhere; the losses mask them out)."""
    full = per_action.new_zeros(len(per_action), *steps.shape)
    full[:, steps] = per_action
    return full
