"""Decoding variants: the plain LM, the ILQL model guided on the top-k tokens or the whole vocabulary
(and, optionally, with narrower heads), a frozen LM steered by a smaller value model through
`ValueGuidedLogitsProcessor`, and the plain LM with the guidance rule's own work and no heads (the floor
of the rule: what a guided step costs above a plain one when the heads cost nothing).

Every call decodes exactly `new_tokens` tokens greedily (EOS disabled) under `torch.inference_mode()`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import LogitsProcessor

from ..generation import ValueGuidedLogitsProcessor, guided_scores
from ..models import AutoModelForCausalLMWithILQLHeads


class RuleOnly(LogitsProcessor):
    """The guided-decoding rule on the plain LM's scores with Q = V = 0: its vocabulary-sized passes (top-k,
    one logsumexp per row, the `-inf` fill) and nothing of the heads. Same tokens as plain greedy decoding."""

    def __init__(self, guidance_top_k: int):
        self.guidance_top_k = guidance_top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        values = scores.new_zeros(scores.shape[:-1])
        return guided_scores(scores, lambda ids: values[..., None].expand(ids.shape), values, beta=1.0,
                             advantage_clip=1.0, guidance_top_k=self.guidance_top_k,
                             inplace=True)  # generate() hands processors its own fp32 copy


def decode_variants(base: nn.Module, guided: AutoModelForCausalLMWithILQLHeads,
                    value_model: AutoModelForCausalLMWithILQLHeads, prompt: torch.Tensor, new_tokens: int,
                    guidance_top_k: int, narrow: AutoModelForCausalLMWithILQLHeads | None = None
                    ) -> dict[str, tuple[str, Callable[[], None]]]:
    """name -> (label, a call that decodes the batch `prompt` [b, T]); `narrow`: the model with a smaller
    head shape (`head_hidden_size` = h/4), decoded on the top-k fast path too."""

    def steered() -> None:
        decode(base, prompt, new_tokens,
               logits_processor=[ValueGuidedLogitsProcessor(value_model, guidance_top_k=guidance_top_k)])

    variants = {
        "plain": ("plain generate()", lambda: decode(base, prompt, new_tokens)),
        "top_k": (f"guided, top-{guidance_top_k} fast path", lambda: decode(guided, prompt, new_tokens, guidance_top_k)),
        "full": ("guided, full vocabulary", lambda: decode(guided, prompt, new_tokens, 0)),
        "steered": ("frozen LM + ValueGuidedLogitsProcessor (smaller value model)", steered),
        "rule_only": (f"floor of the rule: plain generate() + top-{guidance_top_k} guidance rule, no heads (Q = V = 0)",
                      lambda: decode(base, prompt, new_tokens, logits_processor=[RuleOnly(guidance_top_k)])),
    }
    if narrow is not None:
        width = narrow.config.head_hidden_size
        variants["narrow"] = (f"guided, top-{guidance_top_k} fast path, narrow heads (head_hidden_size={width} = h/4)",
                              lambda: decode(narrow, prompt, new_tokens, guidance_top_k))
    return variants


def decode(model: nn.Module, prompt: torch.Tensor, new_tokens: int, top_k: int | None = None, **kwargs) -> None:
    """Greedy `generate()` of exactly `new_tokens` tokens after the batch `prompt` [b, T] (EOS off);
    `top_k`: the guided model's `guidance_top_k` for this call (a decoding setting: safe to switch)."""
    if top_k is not None:
        model.config.guidance_top_k = top_k
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0, **kwargs)
    assert out.shape[1] == prompt.shape[1] + new_tokens
