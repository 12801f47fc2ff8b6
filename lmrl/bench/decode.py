"""Decoding variants: the plain LM, the ILQL model guided on the top-k tokens or the whole vocabulary
(and, optionally, with narrower heads), and a frozen LM steered by a smaller value model through
`ValueGuidedLogitsProcessor`.

Every call decodes exactly `new_tokens` tokens greedily (EOS disabled) under `torch.inference_mode()`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..generation import ValueGuidedLogitsProcessor
from ..models import AutoModelForCausalLMWithILQLHeads


def decode_variants(base: nn.Module, guided: AutoModelForCausalLMWithILQLHeads,
                    value_model: AutoModelForCausalLMWithILQLHeads, prompt: torch.Tensor, new_tokens: int,
                    top_k: int, narrow: AutoModelForCausalLMWithILQLHeads | None = None
                    ) -> dict[str, tuple[str, Callable[[], None]]]:
    """name -> (label, a call that decodes the batch `prompt` [b, T]); `narrow`: the model with a smaller
    head shape (`head_hidden_size`), decoded on the top-k fast path too."""

    def decode(model: nn.Module, guidance_top_k: int | None = None, **kwargs) -> None:
        if guidance_top_k is not None:  # a decoding setting: safe to switch between calls
            model.config.guidance_top_k = guidance_top_k
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0, **kwargs)
        assert out.shape[1] == prompt.shape[1] + new_tokens

    def steered() -> None:
        decode(base, logits_processor=[ValueGuidedLogitsProcessor(value_model, top_k=top_k)])

    variants = {
        "plain": ("plain generate()", lambda: decode(base)),
        "top_k": (f"guided, top-{top_k} fast path", lambda: decode(guided, top_k)),
        "full": ("guided, full vocabulary", lambda: decode(guided, 0)),
        "steered": ("frozen LM + ValueGuidedLogitsProcessor (smaller value model)", steered),
    }
    if narrow is not None:
        width = narrow.config.head_hidden_size
        variants["narrow"] = (f"guided, top-{top_k} fast path, narrow heads (head_hidden_size={width})",
                              lambda: decode(narrow, top_k))
    return variants
