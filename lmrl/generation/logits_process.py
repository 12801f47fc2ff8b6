"""Steer any frozen LM with a separately trained ILQL value model."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from ..compat import CACHE_KEY, output_cache
from ..models import AutoModelForCausalLMWithILQLHeads
from ..models.configuration import check_head_settings
from ..models.policy_logits import decoder_of


class ValueGuidedLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that reweights a frozen LM's next-token distribution with the advantages of a
    (usually much smaller) ILQL value model sharing its tokenizer:
    `scores = log_softmax(scores) + beta * clip(min_k Q_k(s, .) - V(s), -c, c)`, with `c = advantage_clip`.

    The value model keeps its own KV cache across decoding steps, so each step costs it one token of
    its trunk; its own vocabulary projection never runs (Q reads the output embedding's rows of the
    frozen LM's top-k tokens only, with the default `guidance_top_k`).
    Beam search is supported (the cache follows the beams' reordering). Use a fresh processor per
    `generate()` call, or the same one: a new prompt is detected and the cache is rebuilt.

    The decoding settings have the names, defaults and ranges of the value model's config
    ([`ILQLHeadsConfig`]); one left at `None` is read from `value_model.config`.

    Args:
        value_model ([`AutoModelForCausalLMWithILQLHeads`]): the trained value model. One with a behaviour head
            (heads trained on the frozen LM's cached features with `behavior_adapter`) first adds that
            head's correction to the scores, so that `pi_beta` is the data's policy, as its own `generate()` does.
        beta (`float`, *optional*): guidance strength, finite and `>= 0` (`0` leaves the scores as they are,
            apart from a behaviour head's correction).
        advantage_clip (`float`, *optional*): `c` above, `> 0`.
        guidance_top_k (`int`, *optional*): guide only the frozen LM's top-k tokens (others get `-inf`);
            `0` guides the full vocabulary.
        guidance_top_p (`float`, *optional*): nucleus filter inside the top-k, in `(0, 1]` (`1.0` keeps all).
        pad_token_id (`int`, *optional*): id of left padding in batched prompts, so it is masked.
        attention_mask (`torch.Tensor`, *optional*): the prompts' attention mask [batch, prompt length], as
            given to `generate()`. Preferred over `pad_token_id` when the pad token can also start a prompt
            (GPT-2 style tokenizers, where pad = BOS = EOS).

    Examples:

    ```python
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer
    >>> from lmrl import AutoModelForCausalLMWithILQLHeads, ValueGuidedLogitsProcessor

    >>> tokenizer = AutoTokenizer.from_pretrained("gpt2")
    >>> frozen = AutoModelForCausalLM.from_pretrained("gpt2-large")
    >>> value_model = AutoModelForCausalLMWithILQLHeads.from_pretrained("my-ilql-gpt2")
    >>> inputs = tokenizer("Hello", return_tensors="pt")
    >>> steer = ValueGuidedLogitsProcessor(value_model, beta=8.0, guidance_top_k=20)
    >>> out = frozen.generate(**inputs, logits_processor=[steer], max_new_tokens=20)
    ```
    """

    def __init__(
        self,
        value_model: AutoModelForCausalLMWithILQLHeads,
        beta: float | None = None,
        advantage_clip: float | None = None,
        guidance_top_k: int | None = None,
        guidance_top_p: float | None = None,
        pad_token_id: int | None = None,
        attention_mask: torch.Tensor | None = None,
    ):
        name = type(self).__name__
        if not isinstance(value_model, AutoModelForCausalLMWithILQLHeads):
            raise ValueError(
                f"{name}: value_model must be an AutoModelForCausalLMWithILQLHeads (a model with Q and V heads, "
                f"trained by ILQLTrainer or MCTrainer), got {type(value_model).__name__}. Load the trained "
                "model with AutoModelForCausalLMWithILQLHeads.from_pretrained(path)."
            )
        given = {"beta": beta, "advantage_clip": advantage_clip, "guidance_top_k": guidance_top_k,
                 "guidance_top_p": guidance_top_p}
        check_head_settings(given, where=name)
        settings = {key: getattr(value_model.config, key) if value is None else value for key, value in given.items()}
        check_head_settings(settings, where=f"{name}: value_model.config")
        if pad_token_id is not None and not (isinstance(pad_token_id, int) and pad_token_id >= 0):
            raise ValueError(f"{name}: pad_token_id must be a token id (an integer >= 0) or None, got {pad_token_id!r}.")
        if attention_mask is not None and not (isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2):
            shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise ValueError(f"{name}: attention_mask must be the prompts' [batch, length] mask as given to generate(), "
                             f"got {shape}.")
        self.value_model = value_model
        self.beta = settings["beta"]
        self.advantage_clip = settings["advantage_clip"]
        self.guidance_top_k = settings["guidance_top_k"]
        self.guidance_top_p = settings["guidance_top_p"]
        self.pad_token_id = pad_token_id
        self.prompt_attention_mask = attention_mask
        self._trunk = decoder_of(value_model.pretrained_model)
        self._reset()

    def _reset(self) -> None:
        self._seen: torch.Tensor | None = None  # [B, n] ids the cache holds
        self._cache = None
        self._mask: torch.Tensor | None = None  # [B, n]
        self._hidden: torch.Tensor | None = None  # [B, h] last hidden state

    def _run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, past=None) -> None:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  CACHE_KEY: past, "use_cache": True, "return_dict": True}
        if self._trunk is not None:  # the decoder alone: no logits
            out = self._trunk(**inputs)
            self._hidden = out.last_hidden_state[:, -1]
        else:
            out = self.value_model.pretrained_model(**inputs, output_hidden_states=True)
            self._hidden = out.hidden_states[-1][:, -1]
        self._cache = output_cache(out)

    def _advance(self, input_ids: torch.Tensor) -> None:
        """Bring the value model's cache up to `input_ids`, one new token per step when possible."""
        seen = self._seen
        if seen is not None and seen.shape[0] == input_ids.shape[0] and seen.shape[1] == input_ids.shape[1] - 1:
            prefix = input_ids[:, :-1]
            if not torch.equal(prefix, seen):  # beam search reordered the rows
                match = (prefix[:, None, :] == seen[None, :, :]).all(-1)  # [B_new, B_old]
                if not match.any(-1).all():
                    seen = None
                else:
                    order = match.float().argmax(-1)
                    self._cache.reorder_cache(order)
                    self._mask = self._mask[order]
            if seen is not None:
                self._mask = torch.cat([self._mask, self._mask.new_ones(len(input_ids), 1)], dim=1)
                self._run(input_ids[:, -1:], self._mask, self._cache)
                self._seen = input_ids
                return
        self._mask = torch.ones_like(input_ids)
        prompt_mask = self.prompt_attention_mask
        if prompt_mask is not None and prompt_mask.shape[1] <= input_ids.shape[1]:
            if prompt_mask.shape[0] != input_ids.shape[0]:  # beams / samples repeat each prompt
                prompt_mask = prompt_mask.repeat_interleave(input_ids.shape[0] // prompt_mask.shape[0], dim=0)
            self._mask[:, : prompt_mask.shape[1]] = prompt_mask.to(input_ids.device)
        elif self.pad_token_id is not None:  # mask left padding only
            self._mask = ((input_ids != self.pad_token_id).cumsum(-1) > 0).long()
        self._run(input_ids, self._mask)
        self._seen = input_ids

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        model = self.value_model
        if self.beta == 0 and model.behavior_head is None:
            return scores
        self._advance(input_ids.to(model.device))
        hidden = self._hidden
        vocab = model.get_output_embeddings().weight.shape[0]
        usable = scores[..., :vocab].to(model.device)  # ids the value model has no row for are dropped
        usable = model.behavior_logits(usable, hidden)  # a behaviour head's correction of pi_beta, if it has one
        guided = usable if self.beta == 0 else model.guide(
            usable, hidden, beta=self.beta, advantage_clip=self.advantage_clip, guidance_top_k=self.guidance_top_k,
            guidance_top_p=self.guidance_top_p,
        )
        guided = guided.to(scores.device, scores.dtype)
        if scores.shape[-1] > vocab:
            guided = torch.cat([guided, guided.new_full((len(guided), scores.shape[-1] - vocab), float("-inf"))], -1)
        return guided
