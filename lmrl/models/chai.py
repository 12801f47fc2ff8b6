"""The CHAI critic (Verma et al., 2022): utterance-level double Q over frozen LM embeddings.

`Q_k(context, reply) = MLP_k([LN(c), LN(r), LN(c) * LN(r), features])` for k in {1, 2}, where `c`
and `r` are mean-pooled last hidden states of a frozen LM over the context and the reply, and
`features` are task numbers such as the proposed price (`Task.critic_features`). Target copies
`Q^_k` are Polyak-averaged like ILQL's target heads.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from .heads import polyak_update_


class CHAICriticConfig(PreTrainedConfig):
    """Config of [`CHAICritic`].

    Args:
        embedding_size: width of the frozen LM's hidden states the critic reads (0: it reads the features
            alone).
        num_features: number of task features per reply (0 for none).
        hidden_size, num_layers: the MLP of each Q function.
        num_q: number of Q functions (2: clipped double Q).
        features: for information, what computed the features in training (the task named by
            `critic_features`, e.g. "negotiation"). Loading the critic imports nothing by it: decoding is
            given the same function (`CriticScorer(..., features=...)`).
        proposal_model: where the proposal LM that also gives the embeddings was loaded from.
    """

    model_type = "lmrl_chai_critic"

    def __init__(self, embedding_size: int = 768, num_features: int = 0, hidden_size: int = 256,
                 num_layers: int = 2, num_q: int = 2, features: str | None = None,
                 proposal_model: str | None = None, **kwargs):
        if not embedding_size and not num_features:
            raise ValueError("CHAICriticConfig: embedding_size and num_features are both 0, so the critic would read "
                             "nothing: give it the LM's embeddings, the reply features, or both.")
        self.embedding_size = embedding_size
        self.num_features = num_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_q = num_q
        self.features = features
        self.proposal_model = proposal_model
        super().__init__(**kwargs)


def _mlp(config: CHAICriticConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 3 * config.embedding_size + config.num_features
    for _ in range(config.num_layers):
        layers += [nn.Linear(width, config.hidden_size), nn.GELU()]
        width = config.hidden_size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class CHAICritic(PreTrainedModel):
    """Scores candidate replies: `critic(context [B, E], candidates [B, C, E], features [B, C, F])`
    returns Q values `[num_q, B, C]` (`target=True` uses the target copies).

    Example:
        ```python
        >>> critic = CHAICritic(CHAICriticConfig(embedding_size=64, num_features=8))
        >>> q = critic(torch.randn(2, 64), torch.randn(2, 5, 64), torch.randn(2, 5, 8))
        >>> q.shape
        torch.Size([2, 2, 5])
        ```
    """

    config_class = CHAICriticConfig
    main_input_name = "context"

    def __init__(self, config: CHAICriticConfig):
        super().__init__(config)
        self.norm = nn.LayerNorm(config.embedding_size) if config.embedding_size else nn.Identity()
        self.q = nn.ModuleList(_mlp(config) for _ in range(config.num_q))
        self.target_q = nn.ModuleList(_mlp(config) for _ in range(config.num_q))
        self.target_q.requires_grad_(False)
        self.post_init()
        self.target_q.load_state_dict(self.q.state_dict())

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.reset_parameters()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def inputs(self, context: torch.Tensor, candidates: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        c = self.norm(context)[:, None].expand(-1, candidates.shape[1], -1)  # [B, C, E]
        r = self.norm(candidates)  # [B, C, E]
        parts = [c, r, c * r] if self.config.embedding_size else []
        if self.config.num_features:
            if features is None or features.shape[-1] != self.config.num_features:
                got = None if features is None else features.shape[-1]
                raise ValueError(f"The critic expects {self.config.num_features} features per reply, got {got}.")
            parts.append(features.to(r.dtype))
        return torch.cat(parts, dim=-1)  # [B, C, 3E + F]

    def forward(self, context: torch.Tensor, candidates: torch.Tensor, features: torch.Tensor | None = None,
                target: bool = False) -> torch.Tensor:
        x = self.inputs(context, candidates, features)
        heads = self.target_q if target else self.q
        return torch.stack([head(x).squeeze(-1) for head in heads])  # [num_q, B, C]

    @torch.no_grad()
    def update_target_heads(self, alpha: float) -> None:
        """Polyak step `Q^ <- (1 - alpha) Q^ + alpha Q`."""
        polyak_update_(self.target_q, self.q, alpha)


AutoConfig.register(CHAICriticConfig.model_type, CHAICriticConfig)
AutoModel.register(CHAICriticConfig, CHAICritic)
