"""Q and V heads that read the trunk's last hidden state (docs/design.md, section 3: Heads).

Every Q head answers two questions with one interface:
    head(hidden)                 -> Q(s, .) over the whole vocabulary      [..., V]
    head(hidden, token_ids=ids)  -> Q(s, a) for the given tokens only      [..., k]
The second form is what makes training targets and guided decoding cheap: it never builds the
[..., V] tensor. For the CQL term, `head.projected(features, output_embedding)` returns Q over the
vocabulary kept factored ([`ProjectedLogits`]), for a cross-entropy computed chunk by chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.vocab import ProjectedLogits


def default_hidden_features(in_features: int) -> int:
    """Width of a head's hidden layer when none is given: twice its input, the paper's heads. A quarter of it
    (7x fewer head parameters, cheaper batch-1 decoding) valued an unseen token (ending the reply) above the
    rewarded one on the doors task (docs/benchmarks.md, "The head shape")."""
    return 2 * in_features


def _mlp(in_features: int, hidden_features: int | None, out_features: int) -> nn.Sequential:
    """`in -> hidden -> out` with a ReLU; `hidden_features=None`: `default_hidden_features(in_features)`."""
    hidden_features = hidden_features or default_hidden_features(in_features)
    return nn.Sequential(
        nn.Linear(in_features, hidden_features), nn.ReLU(), nn.Linear(hidden_features, out_features)
    )


class TiedQHead(nn.Module):
    """`Q(s, .) = W_E g(h) + b`, with `W_E` the LM's output embedding (detached) and `g` a small MLP.

    `g`'s last layer starts at zero, so Q starts at the per-token bias `b` (zero): the head adds
    O(h^2) parameters instead of the O(h V) of an untied vocabulary projection (`g`: h -> 2h -> h, or
    h -> `hidden_features` -> h).
    """

    def __init__(self, hidden_size: int, vocab_size: int, hidden_features: int | None = None):
        super().__init__()
        self.mlp = _mlp(hidden_size, hidden_features, hidden_size)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def features(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden)  # g(h) [..., h]

    def forward(
        self,
        hidden: torch.Tensor,
        output_embedding: torch.Tensor,
        token_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.scores(self.features(hidden), output_embedding, token_ids)

    def scores(
        self, g: torch.Tensor, output_embedding: torch.Tensor, token_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Q from precomputed features, for the given tokens [..., k] or the vocabulary [..., V]."""
        weight = output_embedding.detach()  # [V, h]; Q never moves the LM head
        if token_ids is None:
            return g @ weight.T.to(g.dtype) + self.bias.to(g.dtype)  # [..., V]
        rows = F.embedding(token_ids, weight).to(g.dtype)  # [..., k, h]: the rows of the given tokens (a fast gather)
        return torch.einsum("...h,...kh->...k", g, rows) + self.bias.to(g.dtype)[token_ids]

    def projected(self, g: torch.Tensor, output_embedding: torch.Tensor) -> ProjectedLogits:
        """Q over the vocabulary at features g [N, h], factored: `g @ W_E^T + b` (W_E detached)."""
        return ProjectedLogits(g, output_embedding.detach(), self.bias)


class StackedTiedQHeads:
    """Several tied Q heads' layers stacked, for decoding: `min_k Q_k(s, a)` of the given tokens with one
    matmul for every head's first layer, one batched matmul for their second layers and one gather of
    the output embedding's rows for all heads:

        Z = relu(h @ [W1_1; W1_2]^T + [b1_1; b1_2])         [N, K * 2h]   (z_k = relu(W1_k h + b1_k))
        G = Z_k @ W2_k^T + b2_k, batched over k             [K, N, h]     (g_k(h))
        Q = W_E[a] . G + b_k[a], a the given tokens         [K, N, k]

    The stacked weights are copies (torch.cat) of the heads' parameters, whose names and checkpoints do not
    change; they are made at first use and again whenever a parameter changes (an optimizer step,
    `load_state_dict`, `.to()`), and used without autograd only.

    Example:
        ```python
        >>> heads = nn.ModuleList(TiedQHead(8, 100) for _ in range(2))
        >>> StackedTiedQHeads().min_q(heads, torch.randn(3, 8), torch.randn(100, 8), torch.tensor([[1, 2]] * 3)).shape
        torch.Size([3, 2])
        ```
    """

    def __init__(self):
        self._key: tuple | None = None

    def _stack(self, heads: nn.ModuleList) -> None:
        params = [p for head in heads for p in (*head.mlp.parameters(), head.bias)]
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        if key == self._key:
            return
        with torch.inference_mode(False), torch.no_grad():  # usable in and out of inference mode
            self.w1 = torch.cat([head.mlp[0].weight for head in heads])  # [K * 2h, h]
            self.b1 = torch.cat([head.mlp[0].bias for head in heads])  # [K * 2h]
            self.w2 = torch.stack([head.mlp[2].weight.T for head in heads])  # [K, 2h, h]
            self.b2 = torch.stack([head.mlp[2].bias for head in heads])[:, None]  # [K, 1, h]
            self.bias = torch.stack([head.bias for head in heads])  # [K, V]
        self._key = key

    def min_q(
        self, heads: nn.ModuleList, hidden: torch.Tensor, output_embedding: torch.Tensor, token_ids: torch.Tensor
    ) -> torch.Tensor:
        """`min_k Q_k(s, a)` [..., k] at states `hidden` [..., h] for `token_ids` [..., k]."""
        self._stack(heads)
        *lead, k = token_ids.shape
        hidden = hidden.reshape(-1, hidden.shape[-1]).to(self.w1.dtype)  # [N, h]
        z = F.linear(hidden, self.w1, self.b1).relu_()  # [N, K * 2h]
        z = z.view(len(hidden), len(heads), -1).transpose(0, 1)  # [K, N, 2h]
        g = torch.baddbmm(self.b2, z, self.w2)  # [K, N, h]
        ids = token_ids.reshape(len(hidden), k)
        rows = F.embedding(ids, output_embedding.detach()).to(g.dtype)  # [N, k, h], once for all heads
        q = torch.bmm(rows, g.permute(1, 2, 0))  # [N, k, K]
        q = q + self.bias[:, ids].permute(1, 2, 0).to(q.dtype)  # + b_k[a]
        return q.amin(dim=-1).view(*lead, k)


class UntiedQHead(nn.Module):
    """An MLP `h -> 2h -> V`, as in the reference implementations (kept for comparisons)."""

    def __init__(self, hidden_size: int, vocab_size: int, hidden_features: int | None = None):
        super().__init__()
        self.mlp = _mlp(hidden_size, hidden_features, vocab_size)

    def features(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp[1](self.mlp[0](hidden))  # [..., 2h]

    def forward(
        self,
        hidden: torch.Tensor,
        output_embedding: torch.Tensor | None = None,
        token_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.scores(self.features(hidden), output_embedding, token_ids)

    def scores(
        self, z: torch.Tensor, output_embedding: torch.Tensor | None = None, token_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.mlp[2]
        if token_ids is None:
            return out(z)
        rows = F.embedding(token_ids, out.weight)  # [..., k, 2h]
        return torch.einsum("...d,...kd->...k", z, rows) + out.bias[token_ids]

    def projected(self, z: torch.Tensor, output_embedding: torch.Tensor | None = None) -> ProjectedLogits:
        """Q over the vocabulary at features z [N, 2h], factored: the MLP's output layer."""
        return ProjectedLogits(z, self.mlp[2].weight, self.mlp[2].bias)


class ValueHead(nn.Module):
    """`V(s)`: an MLP `h -> 2h -> 1`."""

    def __init__(self, hidden_size: int, hidden_features: int | None = None):
        super().__init__()
        self.mlp = _mlp(hidden_size, hidden_features, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden).squeeze(-1)


@torch.no_grad()
def polyak_update_(target: nn.Module, online: nn.Module, alpha: float) -> None:
    """`target <- (1 - alpha) target + alpha online`, parameter by parameter, in place.

    Element-wise, so it runs on whatever part of each tensor this process holds: the full tensor
    (single process, DDP, ZeRO-1/2), the local dim-0 shard (FSDP2: online and target shard alike),
    or the local partition `ds_tensor` (DeepSpeed ZeRO-3: partitions of same-shaped tensors line
    up). FSDP1's flat parameters do not line up: [`TargetUpdateCallback`] gathers them first.
    """
    targets, onlines = list(target.parameters()), list(online.parameters())
    targets = [getattr(p, "ds_tensor", p) for p in targets]  # ZeRO-3: this process's partition
    onlines = [getattr(p, "ds_tensor", p) for p in onlines]
    onlines = [o.to(t.dtype) for o, t in zip(onlines, targets)]  # fp32 targets beside a bf16 model
    for t, o in zip(targets, onlines):
        if t.shape != o.shape:
            raise RuntimeError(
                f"Polyak update: the target's local part {tuple(t.shape)} does not line up with the online "
                f"head's {tuple(o.shape)}. Under FSDP1 use lmrl's trainers (they gather the parameters "
                "first) or FSDP2 (recipes/accelerate/fsdp.yaml)."
            )
    torch._foreach_lerp_(targets, onlines, alpha)


def make_q_head(head_type: str, hidden_size: int, vocab_size: int, hidden_features: int | None = None) -> nn.Module:
    if head_type == "tied":
        return TiedQHead(hidden_size, vocab_size, hidden_features)
    if head_type == "untied":
        return UntiedQHead(hidden_size, vocab_size, hidden_features)
    raise ValueError(f"head_type must be 'tied' or 'untied', got {head_type!r}.")
