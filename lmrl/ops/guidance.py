"""The guided-decoding rule shared by the ILQL model's forward and `ValueGuidedLogitsProcessor`.

    scores = log_softmax(logits) + beta * clip(min_k Q_k(s, .) - V(s), -c, c)       (c: advantage_clip)

With `guidance_top_k > 0` Q is computed only for the base policy's top-k tokens (optionally narrowed by
a nucleus `guidance_top_p`); the other tokens get `-inf`, i.e. guidance reweights the filtered base
policy. The settings have the names of [`ILQLHeadsConfig`]'s fields, which own their defaults and ranges.
This keeps guided decoding about as cheap as plain decoding on large vocabularies: besides the heads,
a step reads the logits a few times (top-k, one logsumexp per row, writing `-inf`) and writes no
vocabulary-sized log-softmax (docs/benchmarks.md, "Where a guided decode step's time goes").
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# q_fn(token_ids) -> min_k Q_k(s, a) for those tokens [..., k]; q_fn(None) -> over the vocabulary [..., V]
QFunction = Callable[[torch.Tensor | None], torch.Tensor]


def guided_scores(
    logits: torch.Tensor,
    q_fn: QFunction,
    values: torch.Tensor,
    beta: float,
    advantage_clip: float,
    guidance_top_k: int = 0,
    guidance_top_p: float = 1.0,
    inplace: bool = False,
) -> torch.Tensor:
    """Return guided next-token scores (fp32) for base `logits` [..., V] and state values `values` [...].

    `guidance_top_k=0` (or a k as large as the vocabulary) guides the whole vocabulary; the settings are
    not range-checked here (the model config and [`ValueGuidedLogitsProcessor`] check them).

    The top-k path takes the top-k of the raw logits (the same tokens as of the log-probabilities) and
    normalizes only those k by one logsumexp per row, `log p_a = logit_a - m - log sum_v exp(logit_v - m)`
    with m the row's largest logit; Q is computed for the k surviving tokens only. It allocates one
    vocabulary-sized fp32 tensor, which holds `exp(logits - m)` for the sum and then becomes the
    returned scores; `inplace=True` uses fp32 `logits` themselves for it (pass logits nobody reads
    afterwards, e.g. a model's own output), so a decoding step allocates nothing vocabulary-sized."""
    values = values.float()[..., None]
    if guidance_top_k <= 0 or guidance_top_k >= logits.shape[-1]:
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # [..., V]
        advantage = (q_fn(None).float() - values).clamp_(-advantage_clip, advantage_clip)  # [..., V]
        return log_probs.add_(advantage.mul_(beta))

    top_logits, top_ids = top_k_tokens(logits, guidance_top_k)  # [..., k], sorted descending
    top_logits = top_logits.float()
    peak = top_logits[..., :1]  # m: the row's largest logit
    own = inplace and logits.dtype == torch.float32 and not logits.requires_grad
    scores = torch.sub(logits, peak, out=logits) if own else logits - peak  # [..., V] fp32: logits - m
    log_total = scores.exp_().sum(dim=-1, keepdim=True).log_()  # log sum_v exp(logit_v - m)
    top_log_probs = top_logits - peak - log_total
    advantage = (q_fn(top_ids).float() - values).clamp_(-advantage_clip, advantage_clip)
    top_scores = top_log_probs + beta * advantage
    if guidance_top_p < 1.0:
        probs = top_log_probs.exp()
        mass_before = probs.cumsum(dim=-1) - probs  # the most likely token always survives
        top_scores = top_scores.masked_fill(mass_before >= guidance_top_p, float("-inf"))
    return scores.fill_(float("-inf")).scatter_(-1, top_ids, top_scores)


def top_k_tokens(scores: torch.Tensor, k: int, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """`scores.topk(k, dim=-1)` (values sorted descending, and their ids), in two cheap passes over a large
    vocabulary. The tokens are split into n = V // block groups of `block` tokens each, group c holding the
    tokens c, c + n, c + 2n, ... (so that the groups' maxima are one vectorized pass over [block, n]); the
    k groups with the largest maxima hold the k largest scores, so the exact top-k runs on those k * block
    candidates, plus the last V % block tokens, which belong to no group."""
    *lead, vocab = scores.shape
    groups = vocab // block
    if 4 * k > groups:  # too few groups to gain anything
        return scores.topk(k, dim=-1)
    rows = scores.reshape(-1, vocab)
    grouped = block * groups
    table = rows[:, :grouped].unflatten(1, (block, groups))  # [R, block, n] (a view): column c is group c
    top_groups = table.amax(dim=1).topk(k, dim=-1, sorted=False).indices  # [R, k]
    candidates = table.gather(2, top_groups[:, None, :].expand(-1, block, -1)).flatten(1)  # [R, block * k]
    if grouped < vocab:
        candidates = torch.cat([candidates, rows[:, grouped:]], dim=1)
    values, where = candidates.topk(k, dim=-1)
    ids = (where // k) * groups + top_groups.gather(1, where % k)  # candidate (j, i) is token j * n + c_i
    if grouped < vocab:
        ids = torch.where(where < block * k, ids, where - block * k + grouped)
    return values.view(*lead, k), ids.view(*lead, k)
