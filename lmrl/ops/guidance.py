"""The guided-decoding rule shared by the ILQL model's forward and `ValueGuidedLogitsProcessor`.

    scores = log_softmax(logits) + beta * clip(min_k Q_k(s, .) - V(s), -c, c)

With `top_k > 0` Q is computed only for the base policy's top-k tokens (optionally narrowed by a
nucleus `top_p`); the other tokens get `-inf`, i.e. guidance reweights the filtered base policy.
This keeps guided decoding about as cheap as plain decoding on large vocabularies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# q_fn(token_ids) -> min_k Q_k(s, a) for those tokens [..., k]; q_fn(None) -> over the vocabulary [..., V]
QFunction = Callable[[torch.Tensor | None], torch.Tensor]


def guided_scores(
    logits: torch.Tensor,
    q_fn: QFunction,
    values: torch.Tensor,
    beta: float,
    clip: float,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Return guided next-token scores (fp32) for base `logits` [..., V] and state values `values` [...].

    The top-k path allocates one vocabulary-sized tensor: `log_softmax(logits)`, which then becomes the
    returned scores in place; Q is computed for the k surviving tokens only."""
    values = values.float()[..., None]
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # [..., V]
    if top_k <= 0 or top_k >= logits.shape[-1]:
        advantage = (q_fn(None).float() - values).clamp_(-clip, clip)  # [..., V]
        return log_probs.add_(advantage.mul_(beta))

    top_log_probs, top_ids = top_k_tokens(log_probs, top_k)  # [..., k], sorted descending
    advantage = (q_fn(top_ids).float() - values).clamp_(-clip, clip)
    top_scores = top_log_probs + beta * advantage
    if top_p < 1.0:
        probs = top_log_probs.exp()
        mass_before = probs.cumsum(dim=-1) - probs  # the most likely token always survives
        top_scores = top_scores.masked_fill(mass_before >= top_p, float("-inf"))
    return log_probs.fill_(float("-inf")).scatter_(-1, top_ids, top_scores)


def top_k_tokens(scores: torch.Tensor, k: int, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """`scores.topk(k, dim=-1)` (values sorted descending, and their ids), in two cheap passes over a large
    vocabulary: the k blocks of `block` tokens with the largest maxima hold the k largest scores, so the
    exact top-k runs on those k * block candidates only."""
    *lead, vocab = scores.shape
    if 4 * k * block > vocab:  # too few blocks to gain anything
        return scores.topk(k, dim=-1)
    rows = scores.reshape(-1, vocab)
    if vocab % block:
        rows = F.pad(rows, (0, block - vocab % block), value=float("-inf"))
    blocks = rows.view(len(rows), -1, block)  # [R, n, block]
    top_blocks = blocks.amax(dim=-1).topk(k, dim=-1).indices  # [R, k]
    candidates = blocks.gather(1, top_blocks[..., None].expand(-1, -1, block)).flatten(1)  # [R, k * block]
    values, where = candidates.topk(k, dim=-1)
    ids = top_blocks.gather(1, where // block) * block + where % block
    return values.view(*lead, k), ids.view(*lead, k)
