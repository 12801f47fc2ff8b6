"""Policies for rollouts: a language model's `generate()` (guided when the model has value heads)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .replies import generate_replies
from .turn_cache import ConversationCache


class GeneratePolicy:
    """Replies by `model.generate()` on the conversation so far, batched with left padding
    ([`generate_replies`], shared with proposal sampling).

    Works with any causal LM; an [`AutoModelForCausalLMWithILQLHeads`] decodes guided by its values.
    `conditioning` may rewrite each conversation first (e.g. add a target return for RC-BC). `steer`:
    a separately trained ILQL value model sharing the tokenizer, which steers the (frozen) `model`
    through [`ValueGuidedLogitsProcessor`]. `reuse_cache`: keep the model's KV cache from one call to the
    next ([`ConversationCache`]), so a turn feeds only the tokens its conversation added; with
    `max_length`, each prompt is then a window of max_length/2 to max_length tokens (see there).

    Example:
        ```python
        >>> policy = GeneratePolicy(model, tokenizer, max_new_tokens=8)
        >>> policy([[{"role": "user", "content": "You are at (3, 1)."}]])
        ['up']
        ```
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_new_tokens: int = 16,
        do_sample: bool = False,
        conditioning: Callable[[list[dict]], list[dict]] | None = None,
        steer=None,
        reuse_cache: bool = False,
        **generate_kwargs,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.conditioning = conditioning
        self.steer = steer.eval() if steer is not None else None
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, **generate_kwargs}
        self.cache = ConversationCache() if reuse_cache else None

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        if self.conditioning is not None:
            conversations = [self.conditioning(c) for c in conversations]
        return generate_replies(self.model, self.tokenizer, conversations, steer=self.steer, cache=self.cache,
                                **self.generate_kwargs).texts
