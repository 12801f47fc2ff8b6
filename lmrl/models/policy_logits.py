"""A causal LM's logits at the action states (pi_beta's scores for BC), kept factored when possible.

Training needs the LM's logits only at the N action states, and only inside a cross-entropy. When the
LM's output layer is a plain linear map of its last hidden state, the logits are returned as
[`ProjectedLogits`] (hidden states at the action states x the output layer's weight), the base model
computes its own logits for the last position only (`logits_to_keep=1`), and the BC loss computes
the cross-entropy chunk by chunk, fused with the projection. Architectures that scale or soft-cap
their logits (Gemma 2's `final_logit_softcapping`, Cohere's `logit_scale`, Granite's
`logits_scaling`, ...), non-`nn.Linear` heads (e.g. a LoRA-wrapped `lm_head`) and models without
`logits_to_keep` get the materialized logits instead, as does any model whose last-position logits
do not match the projection on the first call.
"""

from __future__ import annotations

import inspect
import logging

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import unwrap_model

from ..ops.vocab import ProjectedLogits

logger = logging.getLogger(__name__)

# config fields that change the logits after the output layer, with their neutral value
LOGIT_TRANSFORMS = {
    "final_logit_softcapping": None,
    "logit_scale": 1.0,
    "logits_scaling": 1.0,
    "output_multiplier": 1.0,
    "lm_head_multiplier": 1.0,
}


def linear_output_layer(model: nn.Module) -> nn.Linear | None:
    """The LM's output layer when its logits are known to be `hidden_states[-1] @ W^T + b`, else None."""
    model = unwrap_model(model)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear) or "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return None
    config = model.config.get_text_config()
    for name, neutral in LOGIT_TRANSFORMS.items():
        if getattr(config, name, neutral) not in (None, neutral):
            return None
    return head


def decoder_of(model: nn.Module) -> nn.Module | None:
    """The decoder under a causal LM's output layer (e.g. GPT2Model, LlamaModel), whose `last_hidden_state` is
    the LM's `hidden_states[-1]`; None when the model does not expose one."""
    try:
        decoder = model.get_decoder()
    except (AttributeError, ValueError, NotImplementedError):  # models without a separable decoder
        return None
    return None if decoder is None or decoder is model else decoder


class PolicyLogits:
    """Runs a causal LM once and returns `(output, last hidden state [B, T, h], logits at the action
    states [N, V])`; the logits are [`ProjectedLogits`] whenever the output layer allows.

    Keep one instance per model: the first call checks that the model's own last-position logits
    equal the projection of its last hidden state, and the answer is remembered.

    Example:
        ```python
        >>> policy_logits = PolicyLogits()
        >>> steps = action_mask[:, 1:].bool()
        >>> out, hidden, logits = policy_logits(model, steps, input_ids=ids, attention_mask=mask)
        >>> loss = bc_loss(logits, ids[:, 1:][steps])
        ```
    """

    def __init__(self):
        self.factored: bool | None = None  # None until the first call has checked the model

    def __call__(self, model: nn.Module, steps: torch.Tensor, full_logits: bool = False, **model_inputs):
        full_logits = full_logits or self.factored is False or model_inputs.get("labels") is not None
        head = None if full_logits else linear_output_layer(model)
        if head is None:
            out = model(**model_inputs, output_hidden_states=True, return_dict=True)
            return out, out.hidden_states[-1], out.logits[:, :-1][steps]
        out = model(**model_inputs, logits_to_keep=1, output_hidden_states=True, return_dict=True)
        hidden = out.hidden_states[-1]  # [B, T, h]
        if self.factored is None:
            self.factored = _projection_matches(out.logits[:, -1], hidden[:, -1], head)
            if not self.factored:
                logger.warning(
                    "%s's logits are not a linear map of its last hidden state; the BC loss materializes "
                    "them ([tokens x vocab]).", type(unwrap_model(model)).__name__
                )
                return self(model, steps, full_logits=True, **model_inputs)
        return out, hidden, ProjectedLogits(hidden[:, :-1][steps], head.weight, head.bias)


@torch.no_grad()
def _projection_matches(logits: torch.Tensor, hidden: torch.Tensor, head: nn.Linear) -> bool:
    projected = F.linear(hidden, head.weight.to(hidden.dtype), None if head.bias is None else head.bias.to(hidden.dtype))
    tolerance = 1e-3 if logits.dtype == torch.float32 else 2e-2
    return torch.allclose(projected.float(), logits.float(), rtol=tolerance, atol=tolerance * logits.abs().max().item())

