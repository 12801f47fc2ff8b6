"""Who owns a setting: the model's config owns its head and decoding settings; a trainer config only
overrides the ones it sets, says so in the log, and refuses to rebuild heads of another type."""

import logging
from pathlib import Path

import pytest
import torch

from lmrl import AutoModelForCausalLMWithILQLHeads, ILQLConfig, ILQLTrainer, MCConfig, MCTrainer
from lmrl.models import ILQLHeadsConfig
from lmrl.models.tiny import tiny_causal_lm
from lmrl.recipes import parse_recipe, read_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

ROWS = [{"messages": [{"role": "user", "content": "Pick a door:"},
                      {"role": "assistant", "content": " blue" if i % 2 else " red", "reward": float(i % 2)}]}
        for i in range(8)]


def _args(config_class, tmp_path, **overrides):
    return config_class(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2,
                        save_strategy="no", report_to="none", disable_tqdm=True, **overrides)


@pytest.mark.parametrize("trainer_class,config_class", [(ILQLTrainer, ILQLConfig), (MCTrainer, MCConfig)])
def test_a_models_own_decoding_settings_survive_training_with_a_default_config(tokenizer, tmp_path, trainer_class,
                                                                                config_class):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer), beta=8.0, guidance_top_k=7,
                                                              guidance_top_p=0.8, advantage_clip=3.0)
    trainer = trainer_class(model=model, args=_args(config_class, tmp_path), train_dataset=ROWS,
                            processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    for config in (trainer.model.config, AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "out").config):
        assert (config.beta, config.guidance_top_k, config.guidance_top_p, config.advantage_clip) == (8.0, 7, 0.8, 3.0)


def test_a_setting_the_trainer_config_sets_overrides_the_models_and_is_logged(tokenizer, tmp_path, caplog):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer), beta=8.0, guidance_top_k=7)
    with caplog.at_level(logging.INFO, logger="lmrl"):
        trainer = ILQLTrainer(model=model, args=_args(ILQLConfig, tmp_path, beta=2.0), train_dataset=ROWS,
                              processing_class=tokenizer)
    assert trainer.model.config.beta == 2.0 and trainer.model.config.guidance_top_k == 7
    assert "ILQLConfig sets beta=2.0 (the model had 8.0)" in caplog.text
    assert "guidance_top_k" not in caplog.text  # an unset field changes nothing and logs nothing


def test_a_model_given_by_path_keeps_its_saved_settings_unless_the_config_sets_them(tokenizer, tmp_path):
    saved = tmp_path / "saved"
    AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer), beta=8.0,
                                                      head_type="untied").save_pretrained(saved)
    kept = ILQLTrainer(model=str(saved), args=_args(ILQLConfig, tmp_path), train_dataset=ROWS,
                       processing_class=tokenizer)
    assert kept.model.config.beta == 8.0 and kept.model.config.head_type == "untied"
    overridden = ILQLTrainer(model=str(saved), args=_args(ILQLConfig, tmp_path, guidance_top_p=0.5),
                             train_dataset=ROWS, processing_class=tokenizer)
    assert overridden.model.config.beta == 8.0 and overridden.model.config.guidance_top_p == 0.5


def test_fresh_heads_take_the_configs_settings_or_the_models_defaults(tokenizer, tmp_path):
    fresh = ILQLTrainer(model=tiny_causal_lm(tokenizer), args=_args(ILQLConfig, tmp_path), train_dataset=ROWS,
                        processing_class=tokenizer).model
    assert (fresh.config.head_type, fresh.config.beta, fresh.config.guidance_top_k) == ("tied", 4.0, 50)
    untied = ILQLTrainer(model=tiny_causal_lm(tokenizer), args=_args(ILQLConfig, tmp_path, head_type="untied",
                                                                     beta=1.5),
                         train_dataset=ROWS, processing_class=tokenizer).model
    assert (untied.config.head_type, untied.config.beta) == ("untied", 1.5)
    assert untied.q_heads[0].mlp[-1].out_features == len(tokenizer)


def test_a_head_type_other_than_the_models_is_refused_in_words(tokenizer, tmp_path):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer), head_type="tied")
    heads = {k: v.clone() for k, v in model.q_heads.state_dict().items()}
    with pytest.raises(ValueError, match=r"ILQLConfig asks for head_type='untied', but the model given already has "
                                         r"head_type='tied' heads.*Leave head_type unset"):
        ILQLTrainer(model=model, args=_args(ILQLConfig, tmp_path, head_type="untied"), train_dataset=ROWS,
                    processing_class=tokenizer)
    assert all(torch.equal(v, heads[k]) for k, v in model.q_heads.state_dict().items())
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    with pytest.raises(ValueError, match=r"asks for head_type='untied', but the model given already has "
                                         r"head_type='tied' heads"):
        ILQLTrainer(model=str(saved), args=_args(ILQLConfig, tmp_path, head_type="untied"), train_dataset=ROWS,
                    processing_class=tokenizer)


def test_an_out_of_range_setting_is_refused_when_the_config_is_built(tmp_path):
    with pytest.raises(ValueError, match=r"ILQLConfig: guidance_top_p must be in \(0, 1\], got 1.5"):
        ILQLConfig(output_dir=str(tmp_path), guidance_top_p=1.5)
    with pytest.raises(ValueError, match="MCConfig: head_type must be one of"):
        MCConfig(output_dir=str(tmp_path), head_type="wide")


def test_head_hidden_size_from_the_trainer_config_shapes_fresh_heads_and_is_saved(tokenizer, tmp_path):
    trainer = ILQLTrainer(model=tiny_causal_lm(tokenizer), args=_args(ILQLConfig, tmp_path, head_hidden_size=8),
                          train_dataset=ROWS, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    reloaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "out")
    for model in (trainer.model, reloaded):
        assert model.config.head_hidden_size == 8
        widths = {m.out_features for m in model.v_head.modules() if isinstance(m, torch.nn.Linear)}
        assert 8 in widths and 2 * model.get_input_embeddings().embedding_dim not in widths  # not the default
    with pytest.raises(ValueError, match=r"asks for head_hidden_size=32, but the model given already has "
                                         r"head_hidden_size=8"):
        ILQLTrainer(model=reloaded, args=_args(ILQLConfig, tmp_path, head_hidden_size=32), train_dataset=ROWS,
                    processing_class=tokenizer)
    with pytest.raises(ValueError, match="ILQLConfig: head_hidden_size must be at least 1"):
        ILQLConfig(output_dir=str(tmp_path), head_hidden_size=0)


@pytest.mark.parametrize("config_class", [ILQLConfig, MCConfig])
@pytest.mark.parametrize("field,value,message", [
    ("beta", -1.0, r"beta must be a finite number >= 0 .*got -1.0"),
    ("beta", float("nan"), r"beta must be a finite number >= 0 .*got nan"),
    ("advantage_clip", 0.0, r"advantage_clip must be a number > 0, got 0.0"),
    ("guidance_top_k", -3, r"guidance_top_k must be an integer >= 0 \(0 = full vocabulary\), got -3"),
    ("gamma", 1.5, r"gamma must be in \[0, 1\] \(the discount per action token\), got 1.5"),
    ("gamma", -0.1, r"gamma must be in \[0, 1\].*got -0.1"),
    ("reward_scale", 0.0, r"reward_scale must be a finite number > 0, got 0.0"),
    ("cql_weight", -0.5, r"cql_weight must be a finite number >= 0.*got -0.5"),
    ("bc_weight", float("inf"), r"bc_weight must be a finite number >= 0.*got inf"),
])
def test_a_trainer_config_refuses_an_out_of_range_value_naming_the_field(tmp_path, config_class, field, value,
                                                                          message):
    with pytest.raises(ValueError, match=rf"{config_class.__name__}: {message}"):
        config_class(output_dir=str(tmp_path), **{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("tau", 1.0, r"ILQLConfig: tau must be in \(0, 1\).*got 1.0"),
    ("alpha", 1.5, r"ILQLConfig: alpha must be in \[0, 1\], got 1.5"),
    ("target_update_interval", 0, r"ILQLConfig: target_update_interval must be >= 1, got 0"),
    ("awac_beta", -1.0, r"ILQLConfig: awac_beta must be a finite number >= 0.*got -1.0"),
])
def test_ilql_refuses_an_out_of_range_training_setting_naming_the_field(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        ILQLConfig(output_dir=str(tmp_path), **{field: value})


@pytest.mark.parametrize("override,message", [
    (["--beta", "-1"], r"ILQLConfig: beta must be a finite number >= 0 .*got -1.0"),
    (["--gamma", "1.5"], r"ILQLConfig: gamma must be in \[0, 1\].*got 1.5"),
])
def test_a_recipe_with_an_out_of_range_value_is_refused_naming_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        parse_recipe(read_recipe(RECIPES / "maze" / "ilql.yaml", override))


def test_the_model_config_refuses_a_negative_guidance_strength(tokenizer):
    with pytest.raises(ValueError, match=r"ILQLHeadsConfig: beta must be a finite number >= 0 .*got -2.0"):
        ILQLHeadsConfig(text_config=tiny_causal_lm(tokenizer).config, beta=-2.0)


def test_from_pretrained_overrides_go_through_the_same_checks_and_log_as_a_trainer_configs(tokenizer, tmp_path,
                                                                                           caplog):
    saved = tmp_path / "saved"
    AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer), beta=8.0).save_pretrained(saved)
    with caplog.at_level(logging.INFO, logger="lmrl"):
        model = AutoModelForCausalLMWithILQLHeads.from_pretrained(saved, beta=2.0, guidance_top_k=3)
    assert (model.config.beta, model.config.guidance_top_k) == (2.0, 3)
    assert "sets beta=2.0 (the model had 8.0)" in caplog.text
    with pytest.raises(ValueError, match=r"from_pretrained\(.*saved\): beta must be a finite number >= 0.*got -1.0"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(saved, beta=-1.0)
    with pytest.raises(ValueError, match=r"from_pretrained\(.*saved\) asks for head_type='untied', but the model given "
                                         r"already has head_type='tied' heads"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(saved, head_type="untied")
