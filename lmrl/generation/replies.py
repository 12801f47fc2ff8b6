"""The one way lmrl samples replies: conversation -> prompt -> left-pad -> `generate()` -> decode.

[`GeneratePolicy`] (rollouts) and proposal sampling ([`sample_replies`], CHAI and planning) both
call [`generate_replies`], so a reply depends only on the model, the prompt, the settings and the
random state, whichever of them asks.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..data.collator import left_pad
from ..data.tokenization import encode_prompt, pad_token_id
from .turn_cache import ConversationCache


def prompt_ids(tokenizer, conversation: list[dict], max_length: int | None = None) -> list[int]:
    """The conversation as a prompt for the agent's next reply, cut from the left to `max_length`."""
    ids = encode_prompt(tokenizer, conversation)
    return ids[-max_length:] if max_length else ids


class GeneratedReplies(NamedTuple):
    """What [`generate_replies`] returns: the decoded replies (stripped, special tokens dropped; with
    `num_return_sequences=n`, the n replies of each conversation in a row), the generated token ids
    `[len(texts), T]` and `generate()`'s own output (e.g. for `output_logits`)."""

    texts: list[str]
    tokens: torch.Tensor
    output: object


@torch.no_grad()
def generate_replies(model, tokenizer, conversations: list[list[dict]], max_length: int | None = None,
                     steer=None, cache: ConversationCache | None = None, **generate_kwargs) -> GeneratedReplies:
    """Replies of `model` to a batch of conversations: each becomes its prompt (cut from the left to
    `max_length`), the prompts are left-padded into one batch, `model.generate(**generate_kwargs)`
    continues them and the new tokens are decoded. `steer`: an ILQL value model sharing the tokenizer
    that reweights `model`'s scores ([`ValueGuidedLogitsProcessor`], fresh for the batch, told its padding).
    `cache`: a [`ConversationCache`] kept across the turns of a rollout, so that each prompt feeds only
    what it adds to the last turn's (`max_length` then bounds a window over each conversation, see
    [`ConversationCache`])."""
    pad = pad_token_id(tokenizer)
    extra = {}
    if cache is None:
        ids, mask = left_pad([prompt_ids(tokenizer, c, max_length) for c in conversations], pad)
    else:
        if generate_kwargs.get("num_return_sequences", 1) != 1 or generate_kwargs.get("num_beams", 1) != 1:
            raise ValueError("generate_replies: a ConversationCache keeps one reply per conversation; it cannot be "
                             "used with num_return_sequences or num_beams above 1.")
        ids, mask, extra = cache.prepare(model, [prompt_ids(tokenizer, c) for c in conversations], pad, max_length)
    if steer is not None:
        from .logits_process import ValueGuidedLogitsProcessor

        processors = list(generate_kwargs.pop("logits_processor", None) or [])
        generate_kwargs["logits_processor"] = [*processors, ValueGuidedLogitsProcessor(steer, attention_mask=mask)]
    output = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                            pad_token_id=pad, **extra, **generate_kwargs)
    sequences = output.sequences if hasattr(output, "sequences") else output
    if cache is not None:
        cache.update(sequences)
    tokens = sequences[:, ids.shape[1]:]
    texts = [text.strip() for text in tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    return GeneratedReplies(texts, tokens, output)
