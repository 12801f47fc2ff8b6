"""The differences between the transformers releases lmrl supports, in one place.

The supported range is declared in pyproject.toml and tested in CI at both ends (`.ci/run`: the locked
environment, the declared floors and the newest releases). Everything below is a name that changed
inside that range; code elsewhere uses these helpers instead of either name.

- transformers 5.24 renamed the KV cache from `past_key_values` to `cache`: the keyword of every
  model's `forward`, the field of every `ModelOutput`, and what `generate()` passes. Older releases
  know only `past_key_values`. `CACHE_KEY` is the name the installed release uses.
- transformers 5.23 renamed gradient checkpointing to activation checkpointing
  (`TrainingArguments.activation_checkpointing`, `PreTrainedModel.activation_checkpointing_enable`);
  the old names warn and go away in v6. `enable_activation_checkpointing` calls whichever exists.

Below the supported range, only for the vLLM serving environment (docs/vllm.md: vLLM pins an older
transformers), the models and heads import: `slice_logits_to_keep` and `SubConfigSpec` (both in 5.21)
have stand-ins, so `lmrl.models` can read an ILQL checkpoint's config and heads there.
"""

from __future__ import annotations

from transformers import PreTrainedModel, TrainingArguments
from transformers.modeling_outputs import CausalLMOutputWithPast

try:
    from transformers.configuration_utils import SubConfigSpec
    from transformers.modeling_utils import slice_logits_to_keep
except ImportError:  # before 5.21: the serving environment only
    SubConfigSpec = None

    def slice_logits_to_keep(hidden_states, logits_to_keep):
        """The positions `logits_to_keep` selects: the last n (0: all), or the given indices."""
        indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        return hidden_states[:, indices]


CACHE_KEY: str = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
"""The name of the KV cache in `forward` keywords and model outputs of the installed transformers."""

HAS_ACTIVATION_CHECKPOINTING: bool = (
    hasattr(PreTrainedModel, "activation_checkpointing_enable")
    and "activation_checkpointing" in TrainingArguments.__dataclass_fields__
)
"""Whether the installed transformers has the `activation_checkpointing` names (5.23 and later)."""


def pop_cache(kwargs: dict, cache=None):
    """`cache`, or the cache passed under the old name `past_key_values` (removed from `kwargs`);
    both at once is an error."""
    old = kwargs.pop("past_key_values", None)
    if old is not None and cache is not None:
        raise ValueError("Pass the KV cache once, as `cache` or as `past_key_values`, not both.")
    return cache if old is None else old


def output_cache(output):
    """The KV cache held by a model output (None when it holds none), read without deprecation warnings."""
    return getattr(output, CACHE_KEY, None)


def enable_activation_checkpointing(model, checkpointing_kwargs: dict | None = None, **options) -> None:
    """Recompute `model`'s layers in the backward pass instead of keeping their activations; `options`
    (`every_n_layers`, `offload`) are transformers' own."""
    if HAS_ACTIVATION_CHECKPOINTING:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing_kwargs, **options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs, **options)
