"""The names transformers changed inside lmrl's supported range (`lmrl.compat`), pinned on whichever
release is installed: the KV cache (`cache` from 5.24, `past_key_values` before) and activation
checkpointing (`activation_checkpointing` from 5.23, `gradient_checkpointing` before)."""

import inspect
import logging
import warnings

import pytest
import torch
from test_models import _randomize_heads, _RecomputingProcessor
from transformers import GPT2LMHeadModel

from lmrl import AutoModelForCausalLMWithILQLHeads, ValueGuidedLogitsProcessor, encode_prompt
from lmrl.compat import CACHE_KEY, output_cache
from lmrl.models.tiny import tiny_causal_lm


def test_cache_key_is_the_name_the_installed_transformers_uses():
    assert CACHE_KEY in inspect.signature(GPT2LMHeadModel.forward).parameters


@pytest.fixture
def no_deprecations(caplog):
    """Fails the test if transformers warns about a deprecated name, as a warning or in its log."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        with caplog.at_level(logging.WARNING, logger="transformers"):
            yield
    assert not [r.getMessage() for r in caplog.records if "deprecat" in r.getMessage().lower()]


def _prompts(tokenizer):
    short, long = encode_prompt(tokenizer, "Pick:"), encode_prompt(tokenizer, "Pick a door: which one?")
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (len(long) - len(short)) + short, long])
    mask = torch.ones_like(ids)
    mask[0, : len(long) - len(short)] = 0
    return {"input_ids": ids, "attention_mask": mask, "pad_token_id": pad, "max_new_tokens": 8, "do_sample": False}


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_guided_generate_with_the_kv_cache_gives_the_tokens_of_generate_without_it(
    tokenizer, architecture, no_deprecations
):
    torch.manual_seed(0)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(
        tiny_causal_lm(tokenizer, architecture), beta=4.0, guidance_top_k=0
    ).eval()
    _randomize_heads(model)
    inputs = _prompts(tokenizer)
    cached = model.generate(**inputs, use_cache=True)
    uncached = model.generate(**inputs, use_cache=False)
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, model.pretrained_model.generate(**inputs))  # the guidance is on



def test_the_model_forward_takes_the_cache_under_either_name_but_not_both(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer), beta=1.0).eval()
    ids = torch.tensor([encode_prompt(tokenizer, "Pick a door")])
    first = model(input_ids=ids[:, :-1], use_cache=True)
    full = model(input_ids=ids).logits[:, -1]
    for name in ("cache", "past_key_values"):
        prefix = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], use_cache=True, **{name: output_cache(prefix)})
        assert output_cache(step).get_seq_length() == ids.shape[1]  # the cache was read and extended
        torch.testing.assert_close(step.logits[:, -1], full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        model(input_ids=ids[:, -1:], cache=output_cache(first), past_key_values=output_cache(first))


def test_the_logits_processor_keeps_the_value_models_cache_without_changing_the_tokens(
    tokenizer, no_deprecations
):
    torch.manual_seed(0)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer), beta=4.0).eval()
    _randomize_heads(model)
    frozen = tiny_causal_lm(tokenizer, "llama")  # a different architecture steered by the GPT-2 value model
    inputs = _prompts(tokenizer)
    processor = ValueGuidedLogitsProcessor(model, attention_mask=inputs["attention_mask"])
    cached = frozen.generate(**inputs, use_cache=True, logits_processor=[processor])
    assert processor._cache is not None and processor._cache.get_seq_length() == cached.shape[1] - 1
    reference = frozen.generate(**inputs, use_cache=False, logits_processor=[
        _RecomputingProcessor(model, attention_mask=inputs["attention_mask"])])
    assert torch.equal(cached, reference)
    assert not torch.equal(cached, frozen.generate(**inputs))


def test_old_recipe_field_gradient_checkpointing_still_works_with_a_deprecation_message():
    from lmrl.recipes import parse_recipe

    recipe = {"algorithm": "ilql", "dataset": "rows.jsonl", "model_name_or_path": "gpt2", "output_dir": "out"}
    with pytest.warns(FutureWarning, match="'gradient_checkpointing' is deprecated.*activation_checkpointing"):
        _, config = parse_recipe(recipe | {"gradient_checkpointing": True}, "old.yaml")
    assert config.activation_checkpointing is True and config.gradient_checkpointing is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, config = parse_recipe(recipe | {"activation_checkpointing": True}, "new.yaml")
    assert config.activation_checkpointing is True and config.gradient_checkpointing is True  # what Trainer reads
    with pytest.raises(ValueError, match="new.yaml: give 'activation_checkpointing' only"):
        parse_recipe(recipe | {"activation_checkpointing": True, "gradient_checkpointing": True}, "new.yaml")
