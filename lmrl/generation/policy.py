"""Policies for rollouts: a language model's `generate()` (guided when the model has value heads)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .replies import generate_replies


class GeneratePolicy:
    """Replies by `model.generate()` on the conversation so far, batched with left padding
    ([`generate_replies`], shared with proposal sampling).

    Works with any causal LM; an [`AutoModelForCausalLMWithILQLHeads`] decodes guided by its values.
    `conditioning` may rewrite each conversation first (e.g. add a target return for RC-BC). `steer`:
    a separately trained ILQL value model sharing the tokenizer, which steers the (frozen) `model`
    through [`ValueGuidedLogitsProcessor`].

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
        **generate_kwargs,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.conditioning = conditioning
        self.steer = steer.eval() if steer is not None else None
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, **generate_kwargs}

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        if self.conditioning is not None:
            conversations = [self.conditioning(c) for c in conversations]
        return generate_replies(self.model, self.tokenizer, conversations, steer=self.steer,
                                **self.generate_kwargs).texts
