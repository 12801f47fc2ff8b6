"""Cross-entropy over a vocabulary without materializing the [tokens x vocab] logits.

Every vocabulary-sized score in ILQL is a linear projection of per-token features:

    Q_k(s, .) = g_k(h) @ W_E^T + b_k        (tied Q heads: features g_k(h) [N, h], W_E the LM's output embedding)
    Q_k(s, .) = z_k(h) @ W_k^T + b_k        (untied Q heads: z_k the MLP's hidden layer [N, 2h])
    logits    = h @ W_lm^T (+ b_lm)         (the LM itself, pi_beta)

[`ProjectedLogits`] keeps such scores factored, and [`vocab_cross_entropy`] computes

    CE = mean_i w_i * (logsumexp_v logits[i, v] - logits[i, a_i])

chunk by chunk over the tokens i, fused with the projection: one chunk of logits [c, V] exists at a
time, in the forward and in the backward alike, and the gradients of the chunk are taken right
there (d CE / d logits = w_i (softmax - onehot(a_i)) / N), so nothing vocabulary-sized is kept
for the backward. Values and gradients equal the plain `F.cross_entropy` on the materialized
logits (tested); the matrix products are the same three as in the plain forward + backward.

Chunking pays only when the logits would not fit: by default the path is picked by size. When what
the plain computation holds at its peak (`materialized_bytes`: the [N, V] logits, the log-probabilities
kept for the backward and their gradient, in fp32) fits `memory_budget` (256 MiB), the logits are
materialized and the plain `F.cross_entropy` runs, never slower; otherwise the chunked path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Default chunk: as many tokens as keep one chunk of fp32 logits near 2^24 values (64 MiB),
# e.g. 130 tokens at a 128k vocabulary, 333 at GPT-2's 50k.
CHUNK_VALUES = 2**24
# Default memory the plain (materialized) cross-entropy may take; above it the chunked path runs.
MEMORY_BUDGET = 256 * 2**20


@dataclass
class ProjectedLogits:
    """Scores `features @ weight.T + bias` over a vocabulary, kept factored.

    features [N, d] (one row per token), weight [V, d], bias [V] or None. Pass `weight.detach()` to
    keep the loss from training the projection (tied Q heads never move the LM's embedding).

    Example:
        ```python
        >>> logits = ProjectedLogits(torch.randn(4, 8), torch.randn(100, 8))
        >>> vocab_cross_entropy(logits, torch.tensor([1, 2, 3, 4])).shape
        torch.Size([])
        ```
    """

    features: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None = None

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.features.shape[0], self.weight.shape[0]))

    def __len__(self) -> int:
        return self.features.shape[0]

    def materialize(self, start: int = 0, end: int | None = None) -> torch.Tensor:
        """The logits of tokens start..end as one tensor [end - start, V]."""
        features = self.features[start:end]
        bias = None if self.bias is None else self.bias.to(features.dtype)
        return F.linear(features, self.weight.to(features.dtype), bias)

    def gather(self, token_ids: torch.Tensor) -> torch.Tensor:
        """The scores of the given tokens only, [N, k] for token_ids [N, k]."""
        rows = F.embedding(token_ids, self.weight.to(self.features.dtype))  # [N, k, d]
        scores = torch.einsum("nd,nkd->nk", self.features, rows)
        return scores if self.bias is None else scores + self.bias.to(scores.dtype)[token_ids]


Logits = torch.Tensor | ProjectedLogits  # [N, V], materialized or factored


def default_chunk_size(vocab_size: int) -> int:
    return max(1, CHUNK_VALUES // vocab_size)


def materialized_bytes(tokens: int, vocab_size: int) -> int:
    """Peak bytes of the plain cross-entropy over [tokens, vocab_size] logits: three fp32 tensors of that
    size (the logits, the log-probabilities kept for the backward, and their gradient)."""
    return 3 * 4 * tokens * vocab_size


def chunks_needed(logits: Logits, chunk_size: int | None = None, memory_budget: int = MEMORY_BUDGET) -> bool:
    """Whether `vocab_cross_entropy` computes these logits chunk by chunk: factored logits, and either an
    explicit `chunk_size` > 0 or (`chunk_size=None`) a materialized peak over `memory_budget` bytes."""
    if isinstance(logits, torch.Tensor) or chunk_size == 0:
        return False
    return chunk_size is not None or materialized_bytes(*logits.shape) > memory_budget


def logit_chunks(logits: Logits, chunk_size: int | None = None) -> Iterator[torch.Tensor]:
    """The rows of `logits` as consecutive materialized chunks [c, V] (c <= chunk_size)."""
    rows, vocab_size = logits.shape
    size = chunk_size or default_chunk_size(vocab_size)
    for start in range(0, rows, size):
        if isinstance(logits, ProjectedLogits):
            yield logits.materialize(start, start + size)
        else:
            yield logits[start : start + size]


def gather_logits(logits: Logits, token_ids: torch.Tensor) -> torch.Tensor:
    """Scores of the given tokens [N, k] from logits [N, V] (materialized or factored)."""
    if isinstance(logits, ProjectedLogits):
        return logits.gather(token_ids)
    return logits.gather(-1, token_ids)


def vocab_cross_entropy(
    logits: Logits,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    chunk_size: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
) -> torch.Tensor:
    """`mean_i w_i * CE(logits[i], targets[i])` in fp32; logits [N, V], targets [N], weights [N] (detached).

    Factored logits ([`ProjectedLogits`]) are materialized and given to `F.cross_entropy` when the plain
    computation's peak (`materialized_bytes`) fits `memory_budget` bytes, else computed `chunk_size`
    tokens at a time (~2^24 logits per chunk). An explicit `chunk_size` always chunks; `0` always
    materializes. No tokens (N = 0) gives 0.
    """
    weights = None if weights is None else weights.detach()
    if not chunks_needed(logits, chunk_size, memory_budget):
        full = logits if isinstance(logits, torch.Tensor) else logits.materialize()
        nll = F.cross_entropy(full.float(), targets, reduction="none")  # [N]
        if weights is not None:
            nll = weights * nll
        return nll.sum() / max(len(targets), 1)
    size = chunk_size or default_chunk_size(logits.shape[1])
    inputs = (logits.features, logits.weight, logits.bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _LinearCrossEntropy.apply(*inputs, targets, weights, size)
    total = sum(
        _weighted_sum(_softmax_and_nll(chunk.float(), targets[start : start + len(chunk)])[1], weights, start)
        for start, chunk in zip(range(0, len(targets), size), logit_chunks(logits, size))
    )
    return torch.as_tensor(total, dtype=torch.float32, device=targets.device) / max(len(targets), 1)


def _token_weights(weights: torch.Tensor | None, start: int, like: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(like) if weights is None else weights[start : start + len(like)].float()


def _weighted_sum(nll: torch.Tensor, weights: torch.Tensor | None, start: int) -> torch.Tensor:
    return (_token_weights(weights, start, nll) * nll).sum()


def _softmax_and_nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Overwrites a fresh fp32 chunk of logits [c, V] with its softmax (one buffer, no temporaries of its
    size); returns it and the negative log-likelihood of the targets [c]."""
    logits -= logits.amax(dim=-1, keepdim=True)
    target_logits = logits.gather(-1, targets[:, None]).squeeze(-1)
    normalizer = logits.exp_().sum(dim=-1)  # sum_v exp(logit_v - max)
    return logits.div_(normalizer[:, None]), normalizer.log() - target_logits


class _LinearCrossEntropy(torch.autograd.Function):
    """`mean_i w_i * CE(features_i @ weight.T + bias, target_i)`, gradients taken chunk by chunk in
    the forward (the backward only scales them by the incoming gradient)."""

    @staticmethod
    def forward(ctx, features, weight, bias, targets, weights, chunk_size):
        need_features, need_weight, need_bias = ctx.needs_input_grad[:3]
        count = max(len(targets), 1)
        w_matrix = weight.to(features.dtype)
        grad_features = torch.zeros_like(features) if need_features else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_bias else None
        total = torch.zeros((), dtype=torch.float32, device=features.device)
        for start in range(0, len(targets), chunk_size):
            chunk = features[start : start + chunk_size]  # [c, d]
            t = targets[start : start + chunk_size]
            logits = F.linear(chunk, w_matrix, None if bias is None else bias.to(chunk.dtype)).float()  # [c, V]
            probs, nll = _softmax_and_nll(logits, t)
            w = _token_weights(weights, start, nll)
            total += (w * nll).sum()
            # d loss / d logits = w_i (softmax_i - onehot(a_i)) / N, written over the chunk's softmax
            grad_logits = probs
            grad_logits[torch.arange(len(t), device=t.device), t] -= 1.0
            grad_logits.mul_((w / count)[:, None])
            if need_bias:
                grad_bias += grad_logits.sum(0)
            grad_logits = grad_logits.to(chunk.dtype)
            if need_features:
                torch.mm(grad_logits, w_matrix, out=grad_features[start : start + chunk_size])  # [c, d]
            if need_weight and chunk.dtype == torch.float32:
                grad_weight.addmm_(grad_logits.T, chunk)  # [V, d], accumulated in place
            elif need_weight:
                grad_weight += (grad_logits.T @ chunk).float()
        # kept as attributes, not saved tensors: the backward hands them over without a copy
        ctx.grads = (grad_features, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total / count

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        if ctx.grads is None:
            raise RuntimeError(
                "vocab_cross_entropy computes its gradients in the forward and hands them over once: a second "
                "backward through it (retain_graph=True) is not supported. Use chunk_size=0 for that."
            )
        grads, ctx.grads = ctx.grads, None
        scale = grad_output.float()
        dtypes = (grads[0].dtype if grads[0] is not None else None, *ctx.dtypes)
        return (
            *(None if g is None else g.mul_(scale).to(dtype) for g, dtype in zip(grads, dtypes)),
            None,
            None,
            None,
        )
