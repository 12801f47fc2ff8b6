"""Policies for rollouts: a language model's `generate()` (guided when the model has value heads)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data import encode_prompt
from ..data.collator import left_pad


class GeneratePolicy:
    """Replies by `model.generate()` on the conversation so far, batched with left padding.

    Works with any causal LM; an [`AutoModelForCausalLMWithILQLHeads`] decodes guided by its values.
    `conditioning` may rewrite each conversation first (e.g. add a target return for RC-BC).

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
        **generate_kwargs,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.conditioning = conditioning
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, **generate_kwargs}
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @torch.no_grad()
    def __call__(self, conversations: list[list[dict]]) -> list[str]:
        if self.conditioning is not None:
            conversations = [self.conditioning(c) for c in conversations]
        input_ids, attention_mask = left_pad([encode_prompt(self.tokenizer, c) for c in conversations],
                                             self.pad_token_id)
        length = input_ids.shape[1]
        device = self.model.device
        out = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            pad_token_id=self.pad_token_id,
            **self.generate_kwargs,
        )
        return [text.strip() for text in self.tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)]
