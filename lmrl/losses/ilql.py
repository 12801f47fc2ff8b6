"""ILQL and its baselines as pure functions on tensors (docs/design.md, section 2: Maths), written next to the maths.

Index convention: a sequence has T tokens; "position t" is the state after reading token t, and
the action taken there is token t + 1. All per-step tensors below are therefore [B, T-1] and
`action_mask[:, 1:]` says which of those steps are agent actions.

    L_Q   = sum_k (Q_k(s,a) - [r + gamma * (1 - done) * V(s')].detach())^2
    L_V   = |tau - 1(u < 0)| * u^2,   u = min_k Q^_k(s,a).detach() - V(s)
    L_CQL = sum_k CrossEntropy(Q_k(s, .), a)
    L_BC  = CrossEntropy(logits(s, .), a)              (optionally AWAC-weighted)
    L     = L_Q + L_V + cql_weight * L_CQL + bc_weight * L_BC

The two vocabulary-sized terms take the scores at the N action states either materialized [N, V]
or factored ([`ProjectedLogits`]: features @ W^T + b), in which case they are computed `chunk_size`
tokens at a time, fused with the projection (see `lmrl.ops.vocab`).
"""

from __future__ import annotations

import torch

from ..ops.vocab import MEMORY_BUDGET, Logits, gather_logits, logit_chunks, vocab_cross_entropy


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """`|tau - 1(u < 0)| * u^2`, element-wise: over-estimates cost (1 - tau), under-estimates tau."""
    weight = torch.where(u < 0, 1.0 - tau, tau)
    return weight * u.pow(2)


def next_state_values(
    values: torch.Tensor, action_mask: torch.Tensor, attention_mask: torch.Tensor, dones: torch.Tensor
) -> torch.Tensor:
    """V(s') for every step [B, T-1].

    s' is the state of the next action token, skipping observation tokens in between. After the
    last action: 0 if the episode terminated (`dones` = 1), else V of the final state (the last real
    token), so truncated episodes bootstrap.

    values [B, T] (V after each token), action_mask / attention_mask [B, T], dones [B].
    """
    next_position, has_next = next_action_steps(action_mask)
    state_values = values[:, :-1]  # [B, L]: V of the state each step acts in
    next_v = state_values.gather(1, next_position)
    last = attention_mask.sum(dim=1).long() - 1  # [B]
    final_v = values.gather(1, last[:, None]) * (1.0 - dones.to(values.dtype))[:, None]  # [B, 1]
    return torch.where(has_next, next_v, final_v)


def next_action_steps(action_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every step t [B, L]: the index of the next action step after t (skipping observation
    tokens), and whether there is one."""
    steps = action_mask[:, 1:].bool()  # [B, L], L = T-1
    batch, length = steps.shape
    position = torch.arange(length, device=action_mask.device).expand(batch, length)
    sentinel = length
    action_position = torch.where(steps, position, sentinel)
    later = torch.cat([action_position[:, 1:], action_position.new_full((batch, 1), sentinel)], dim=1)
    next_position = later.flip(1).cummin(dim=1).values.flip(1)  # first action strictly after t
    return next_position.clamp(max=length - 1), next_position < sentinel


def td_targets(rewards: torch.Tensor, next_v: torch.Tensor, gamma: float) -> torch.Tensor:
    """`r + gamma * V(s')` per step [B, T-1]; termination is already folded into `next_v`."""
    return rewards[:, 1:] + gamma * next_v


def q_loss(q_values: torch.Tensor, targets: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """`sum_k mean_steps (Q_k - target)^2`; q_values [K, B, L], targets [B, L] (detached here)."""
    errors = (q_values - targets.detach()[None]).pow(2)  # [K, B, L]
    return sum(masked_mean(error, steps) for error in errors)


def v_loss(target_q_values: torch.Tensor, state_values: torch.Tensor, steps: torch.Tensor, tau: float):
    """Expectile regression of V(s) [B, L] toward `min_k Q^_k(s, a)` (target_q_values [K, B, L])."""
    u = target_q_values.min(dim=0).values.detach() - state_values
    return masked_mean(expectile_loss(u, tau), steps)


def cql_loss(
    q_logits, actions: torch.Tensor, chunk_size: int | None = None, memory_budget: int = MEMORY_BUDGET
) -> torch.Tensor:
    """`sum_k CE(Q_k(s, .), a)`: pushes down Q of tokens the data did not take.
    q_logits: per head k, Q_k at the N action steps [N, V] (a [K, N, V] tensor or a sequence of
    [`ProjectedLogits`]); actions [N]."""
    return sum(vocab_cross_entropy(q, actions, None, chunk_size, memory_budget) for q in q_logits)


def bc_loss(
    logits: Logits, actions: torch.Tensor, weights: torch.Tensor | None = None, chunk_size: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
) -> torch.Tensor:
    """Cross-entropy of the LM on the data actions, `mean_i w_i CE_i`; logits [N, V] (or factored),
    actions [N], weights [N] (detached)."""
    return vocab_cross_entropy(logits, actions, weights, chunk_size, memory_budget)


def awac_weights(advantages: torch.Tensor, awac_beta: float, max_weight: float = 20.0) -> torch.Tensor:
    """`min(exp(awac_beta * A), max_weight)`: advantage-weighted behaviour cloning (AWAC)."""
    return torch.exp(awac_beta * advantages.detach()).clamp(max=max_weight)


def _cql_and_bc_terms(outputs, actions, cql_weight, bc_weight, bc_weights, chunk_size, memory_budget,
                      stats) -> torch.Tensor:
    """`cql_weight * L_CQL + bc_weight * L_BC` (each only when its weight is > 0); records both in `stats`."""
    total = outputs.v_values.new_zeros((), dtype=torch.float32)
    if cql_weight > 0:
        stats["loss/cql"] = cql_loss(outputs.q_logits, actions, chunk_size, memory_budget)
        total = total + cql_weight * stats["loss/cql"]
    if bc_weight > 0:
        stats["loss/bc"] = bc_loss(outputs.policy_logits, actions, bc_weights, chunk_size, memory_budget)
        total = total + bc_weight * stats["loss/bc"]
    return total


def ilql_loss(
    outputs,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    action_mask: torch.Tensor,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    *,
    tau: float = 0.7,
    gamma: float = 0.99,
    cql_weight: float = 0.1,
    bc_weight: float = 0.0,
    awac_beta: float = 0.0,
    chunk_size: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The full ILQL objective from an [`ILQLOutput`]; returns (loss, detached terms and stats).
    `chunk_size`: tokens per chunk of the CQL and BC cross-entropies (0: materialize the logits; None:
    materialize them when they fit `memory_budget` bytes, else chunk; see `lmrl.ops.vocab`).
    The terms are computed in fp32 whatever the model's dtype (bf16 autocast, a bf16 model)."""
    steps = action_mask[:, 1:].bool()  # [B, L]
    actions = input_ids[:, 1:][steps]  # [N]
    values, q_values, target_q_values = (x.float() for x in (outputs.v_values, outputs.q_values, outputs.target_q_values))
    state_values = values[:, :-1]  # [B, L]

    next_v = next_state_values(values, action_mask, attention_mask, dones)
    targets = td_targets(rewards, next_v, gamma)
    loss_q = q_loss(q_values, targets, steps)
    loss_v = v_loss(target_q_values, state_values, steps, tau)
    loss = loss_q + loss_v

    stats = {"loss/q": loss_q, "loss/v": loss_v}
    advantage = target_q_values.min(dim=0).values - state_values  # [B, L]
    weights = awac_weights(advantage[steps], awac_beta) if awac_beta > 0 and bc_weight > 0 else None
    loss = loss + _cql_and_bc_terms(outputs, actions, cql_weight, bc_weight, weights, chunk_size, memory_budget,
                                    stats)

    stats.update(
        {
            "values/q": masked_mean(q_values.min(dim=0).values, steps),
            "values/v": masked_mean(state_values, steps),
            "values/advantage": masked_mean(advantage, steps),
            "values/target": masked_mean(targets, steps),
        }
    )
    return loss, {k: v.detach() for k, v in stats.items()}


@torch.no_grad()
def ilql_diagnostics(outputs, input_ids: torch.Tensor, action_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Signs of divergence to watch while training (logged, not optimized):

    - `diagnostics/advantage_data` vs `diagnostics/advantage_sampled`: min_k Q_k - V on the data's
      tokens vs on tokens sampled from the model's own pi_beta. Sampled tokens valued far above the
      data's mean Q is extrapolating off the data.
    - `diagnostics/dr3`: mean dot product of the features of consecutive action states,
      phi(s) . phi(s') (DR3, Kumar et al. 2022); steady growth signals feature co-adaptation.
    """
    steps = action_mask[:, 1:].bool()
    state_values = outputs.v_values[:, :-1][steps]  # [N]
    stats = {"diagnostics/advantage_data": (outputs.q_values.min(dim=0).values[steps] - state_values).mean()}
    if outputs.q_logits is not None and outputs.policy_logits is not None and len(state_values):
        sampled = torch.cat(  # [N, 1], one chunk of pi_beta's probabilities at a time
            [torch.multinomial(chunk.float().softmax(-1), 1) for chunk in logit_chunks(outputs.policy_logits)]
        )
        q_sampled = torch.stack([gather_logits(q, sampled) for q in outputs.q_logits])  # [K, N, 1]
        stats["diagnostics/advantage_sampled"] = (q_sampled.min(dim=0).values.squeeze(-1) - state_values).mean()
    if outputs.hidden_states is not None:
        features = outputs.hidden_states[:, :-1].float()  # [B, L, h]
        next_position, has_next = next_action_steps(action_mask)
        following = features.gather(1, next_position[..., None].expand_as(features))
        pairs = steps & has_next
        stats["diagnostics/dr3"] = (features * following).sum(-1)[pairs].mean() if pairs.any() else features.new_zeros(())
    return stats


def monte_carlo_returns(rewards: torch.Tensor, action_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted return-to-go at every step [B, T-1], discounting once per action token."""
    steps = action_mask[:, 1:].bool()
    step_rewards = rewards[:, 1:]
    returns = torch.zeros_like(step_rewards)
    running = torch.zeros_like(step_rewards[:, 0])
    for t in reversed(range(step_rewards.shape[1])):
        running = torch.where(steps[:, t], step_rewards[:, t] + gamma * running, running)
        returns[:, t] = running
    return returns


def mc_loss(
    outputs,
    input_ids: torch.Tensor,
    action_mask: torch.Tensor,
    rewards: torch.Tensor,
    *,
    gamma: float = 0.99,
    cql_weight: float = 0.1,
    bc_weight: float = 0.0,
    chunk_size: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Monte-Carlo regression: Q_k(s, a) and V(s) both regress to the observed return-to-go."""
    steps = action_mask[:, 1:].bool()
    actions = input_ids[:, 1:][steps]
    q_values, state_values = outputs.q_values.float(), outputs.v_values[:, :-1].float()
    returns = monte_carlo_returns(rewards.float(), action_mask, gamma)
    loss_q = q_loss(q_values, returns, steps)
    loss_v = masked_mean((state_values - returns).pow(2), steps)
    loss = loss_q + loss_v
    stats = {"loss/q": loss_q, "loss/v": loss_v}
    loss = loss + _cql_and_bc_terms(outputs, actions, cql_weight, bc_weight, None, chunk_size, memory_budget, stats)
    stats["values/q"] = masked_mean(q_values.min(dim=0).values, steps)
    stats["values/v"] = masked_mean(state_values, steps)
    stats["values/return"] = masked_mean(returns, steps)
    return loss, {k: v.detach() for k, v in stats.items()}
