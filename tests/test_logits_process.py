"""ValueGuidedLogitsProcessor: its settings are the value model's config settings (same names, same ranges),
checked when it is built, and act exactly as those settings do in the value model's own decoding."""

import pytest
import torch

from lmrl import AutoModelForCausalLMWithILQLHeads, ValueGuidedLogitsProcessor, encode_prompt
from lmrl.models.configuration import apply_head_settings
from lmrl.models.tiny import tiny_causal_lm


@pytest.fixture(scope="module")
def value_model(tokenizer):
    torch.manual_seed(0)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer).eval(), beta=4.0).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in [*model.q_heads.parameters(), *model.v_head.parameters()]:
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return model


@pytest.mark.parametrize("kwargs,message", [
    ({"beta": -1.0}, r"ValueGuidedLogitsProcessor: beta must be a finite number >= 0.*got -1.0"),
    ({"beta": float("nan")}, r"beta must be a finite number >= 0.*got nan"),
    ({"beta": float("inf")}, r"beta must be a finite number >= 0.*got inf"),
    ({"advantage_clip": 0.0}, r"advantage_clip must be a number > 0, got 0.0"),
    ({"guidance_top_k": -1}, r"guidance_top_k must be an integer >= 0 \(0 = full vocabulary\), got -1"),
    ({"guidance_top_k": 2.5}, r"guidance_top_k must be an integer >= 0.*got 2.5"),
    ({"guidance_top_p": 0.0}, r"guidance_top_p must be in \(0, 1\], got 0.0"),
    ({"guidance_top_p": 1.5}, r"guidance_top_p must be in \(0, 1\], got 1.5"),
    ({"pad_token_id": -1}, r"pad_token_id must be a token id \(an integer >= 0\) or None, got -1"),
    ({"attention_mask": torch.ones(5)}, r"attention_mask must be the prompts' \[batch, length\] mask.*got \(5,\)"),
])
def test_an_out_of_range_argument_is_refused_naming_it_and_its_value(value_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ValueGuidedLogitsProcessor(value_model, **kwargs)


def test_a_model_without_value_heads_is_refused_in_words(tokenizer):
    plain = tiny_causal_lm(tokenizer)
    with pytest.raises(ValueError, match=r"value_model must be an AutoModelForCausalLMWithILQLHeads .*got "
                                         r"GPT2LMHeadModel.*from_pretrained"):
        ValueGuidedLogitsProcessor(plain)


def test_settings_left_unset_are_the_value_models_and_a_broken_one_there_is_named(value_model):
    config = value_model.config
    processor = ValueGuidedLogitsProcessor(value_model, guidance_top_k=0)
    assert (processor.beta, processor.advantage_clip, processor.guidance_top_p) == (
        config.beta, config.advantage_clip, config.guidance_top_p)
    assert processor.guidance_top_k == 0 and config.guidance_top_k != 0  # given: the model's is left alone
    saved, config.guidance_top_p = config.guidance_top_p, 2.0  # set behind the config's back
    try:
        with pytest.raises(ValueError, match=r"ValueGuidedLogitsProcessor: value_model.config: guidance_top_p must "
                                             r"be in \(0, 1\], got 2.0"):
            ValueGuidedLogitsProcessor(value_model)
        ValueGuidedLogitsProcessor(value_model, guidance_top_p=0.5)  # a valid value given replaces it
    finally:
        config.guidance_top_p = saved


def test_settings_given_to_the_processor_steer_as_the_same_settings_in_the_models_config(tokenizer, value_model):
    """Same names, same meaning: the processor with explicit settings decodes the frozen LM exactly as the
    value model itself decodes once its config carries those settings."""
    settings = {"beta": 2.5, "advantage_clip": 0.3, "guidance_top_k": 6, "guidance_top_p": 0.8}
    ids = torch.tensor([encode_prompt(tokenizer, "Pick a door:")])
    frozen = value_model.pretrained_model
    kwargs = {"input_ids": ids, "max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    steered = frozen.generate(**kwargs, logits_processor=[ValueGuidedLogitsProcessor(value_model, **settings)])
    before = {key: getattr(value_model.config, key) for key in settings}
    try:
        apply_head_settings(value_model.config, settings, where="this test")
        assert torch.equal(value_model.generate(**kwargs), steered)
    finally:
        apply_head_settings(value_model.config, before, where="this test")
    assert not torch.equal(frozen.generate(**kwargs, logits_processor=[ValueGuidedLogitsProcessor(value_model)]),
                           steered)  # the settings do change the replies


def test_beta_zero_leaves_the_frozen_lms_scores_as_they_are(value_model):
    scores = torch.randn(2, value_model.config.get_text_config().vocab_size)
    ids = torch.ones(2, 3, dtype=torch.long)
    assert torch.equal(ValueGuidedLogitsProcessor(value_model, beta=0.0)(ids, scores.clone()), scores)
