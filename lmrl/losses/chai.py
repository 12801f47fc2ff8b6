"""CHAI's critic losses (Verma et al., 2022), utterance level, as pure functions on tensors.

Shapes: B transitions, C = 1 + K candidates per state (the data's reply first, then K proposals
of the proposal LM), K proposals in the next state, n = number of Q functions (2).

    y        = r + gamma * (1 - done) * max_{a' in A(s')} [min_k Q^_k(s', a') + brac_weight * log pi(a'|s')]
    L_TD     = sum_k mean_B (Q_k(s, a) - y)^2
    L_CQL    = sum_k mean_B (logsumexp_{c in C(s)} Q_k(s, c) - Q_k(s, a))
    L        = L_TD + cql_weight * L_CQL

A(s') is the next state's proposals, plus by default the data's reply there (`next_mask` says
which candidates count). The max over proposals is EMaQ's backup (expected-max over the behaviour policy's samples); the
log-probability bonus is a BRAC-style value penalty toward the proposal LM (0 turns it off).
"""

from __future__ import annotations

import torch


def chai_targets(
    rewards: torch.Tensor,  # [B]
    dones: torch.Tensor,  # [B], 1 after the episode's last action
    next_target_q: torch.Tensor,  # [n, B, K] target Q of the next state's proposals
    next_logp: torch.Tensor | None = None,  # [B, K] mean token log-prob of each proposal
    next_mask: torch.Tensor | None = None,  # [B, K] 1 = candidate of the max
    gamma: float = 0.99,
    brac_weight: float = 0.0,
) -> torch.Tensor:
    """TD targets `y` [B]; nothing is bootstrapped after a terminal action."""
    next_q = next_target_q.min(dim=0).values  # [B, K] clipped double Q
    if brac_weight and next_logp is not None:
        next_q = next_q + brac_weight * next_logp
    if next_mask is not None:
        next_q = next_q.masked_fill(next_mask == 0, float("-inf"))
    next_v = next_q.max(dim=-1).values  # [B]
    return (rewards + gamma * (1.0 - dones.float()) * next_v).detach()


def critic_td_loss(q_data: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`q_data` [n, B]: each Q function's value of the data's reply."""
    return ((q_data - targets[None]) ** 2).mean(dim=-1).sum()


def candidate_cql_loss(q_candidates: torch.Tensor, data_index: int = 0) -> torch.Tensor:
    """`q_candidates` [n, B, C]: push down every candidate's Q (soft max), push up the data's."""
    return (torch.logsumexp(q_candidates, dim=-1) - q_candidates[..., data_index]).mean(dim=-1).sum()


def chai_loss(
    q_candidates: torch.Tensor,  # [n, B, C], data reply at index 0
    next_target_q: torch.Tensor,  # [n, B, K]
    rewards: torch.Tensor,
    dones: torch.Tensor,
    next_logp: torch.Tensor | None = None,
    next_mask: torch.Tensor | None = None,
    gamma: float = 0.99,
    cql_weight: float = 1.0,
    brac_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The critic's loss and the statistics worth logging."""
    targets = chai_targets(rewards, dones, next_target_q, next_logp, next_mask, gamma, brac_weight)
    q_data = q_candidates[..., 0]
    loss_td = critic_td_loss(q_data, targets)
    loss_cql = candidate_cql_loss(q_candidates) if cql_weight else q_data.new_zeros(())
    loss = loss_td + cql_weight * loss_cql
    with torch.no_grad():
        best = q_candidates.min(dim=0).values.argmax(dim=-1)
        stats = {
            "loss/td": loss_td.detach(),
            "loss/cql": loss_cql.detach(),
            "values/q_data": q_data.mean(),
            "values/q_proposals": q_candidates[..., 1:].mean(),
            "values/target": targets.mean(),
            "rank/data_is_best": (best == 0).float().mean(),
        }
    return loss, stats
