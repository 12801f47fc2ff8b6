"""PEFT: a LoRA adapter on the trunk (ILQL, MC, BC, CALM), heads trained in full and saved beside it."""

import json
import logging

import pytest
import torch
from peft import LoraConfig
from test_trainers import PROMPT, _args, bandit_rows
from transformers import AutoModelForCausalLM, GPT2Config, set_seed

from lmrl import (
    AutoModelForCausalLMWithILQLHeads,
    BCConfig,
    BCTrainer,
    CALMConfig,
    CALMTrainer,
    ILQLConfig,
    ILQLTrainer,
    MCConfig,
    MCTrainer,
    encode_prompt,
)
from lmrl.models.adapters import trainable_parameters
from lmrl.models.calm import OutcomeHead
from lmrl.models.tiny import build_tiny, tiny_causal_lm
from lmrl.tasks.flight_booking import outcome_label, relabel_row

GPT2_VOCAB = 50257


def _base_on_disk(tokenizer, path, architecture="gpt2", **overrides):
    """A tiny base LM saved and loaded back by path: the adapter names its base by that path."""
    set_seed(0)
    tiny_causal_lm(tokenizer, architecture, **overrides).save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path)


def _guided(model, tokenizer):
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    return model.generate(input_ids=ids, min_new_tokens=4, max_new_tokens=4, do_sample=False,
                          pad_token_id=tokenizer.pad_token_id, output_scores=True, return_dict_in_generate=True)


def _assert_same_generation(a, b):
    assert torch.equal(a.sequences, b.sequences)
    for x, y in zip(a.scores, b.scores):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def _trunk_weights(model):
    """The frozen base weights under a LoRA-adapted trunk, by their plain names."""
    return {k.replace(".base_layer", ""): v for k, v in model.get_base_model().state_dict().items() if "lora_" not in k}


def test_lora_ilql_trains_under_5_percent_of_the_parameters_and_reloads_to_the_same_guided_generations(
    tokenizer, tmp_path, caplog
):
    # GPT-2's vocabulary size at width 64, so that embeddings weigh what they do in GPT-2 small; with a
    # 300-token vocabulary the heads alone are 17% of a 64-wide 2-layer model.
    base = _base_on_disk(tokenizer, tmp_path / "base", vocab_size=GPT2_VOCAB)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    args = _args(ILQLConfig, tmp_path, "lora", learning_rate=1e-2, max_steps=3, per_device_train_batch_size=8,
                 logging_steps=1, beta=3.0)
    with caplog.at_level(logging.INFO, logger="lmrl"):
        trainer = ILQLTrainer(model=base, args=args, train_dataset=bandit_rows(24), processing_class=tokenizer,
                              peft_config=LoraConfig(r=4, lora_alpha=8))
    counts = trainer.parameter_counts
    print(f"ILQL + LoRA r=4, tiny GPT-2 (h=64, 2 layers, vocab {GPT2_VOCAB}): {counts}")
    assert counts["trainable_fraction"] < 0.05
    assert f"trainable: {counts['trainable_fraction']:.2%}" in caplog.text
    model = trainer.model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith(("q_heads.", "v_head.")) for n in trainable)
    assert any("lora_" in n for n in trainable) and any(n.startswith("v_head.") for n in trainable)
    heads_before = {k: v.clone() for k, v in model.q_heads.state_dict().items()}
    targets_before = {k: v.clone() for k, v in model.target_q_heads.state_dict().items()}

    trainer.train()
    for key, value in _trunk_weights(model.pretrained_model).items():
        assert torch.equal(value, frozen[key]), key  # the base stays as it was
    assert any(not torch.equal(v, heads_before[k]) for k, v in model.q_heads.state_dict().items())
    assert any(not torch.equal(v, targets_before[k]) for k, v in model.target_q_heads.state_dict().items())

    trainer.save_model()
    out = tmp_path / "lora"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tmp_path / "base")
    assert (out / "ilql_heads.safetensors").exists() and not (out / "model.safetensors").exists()
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(out)
    assert loaded.has_peft_adapter and loaded.config.beta == args.beta
    expected = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert not any(p.requires_grad for n, p in loaded.named_parameters() if "lora_" in n)
    trainable = AutoModelForCausalLMWithILQLHeads.from_pretrained(out, is_trainable=True)  # to train on
    assert all(p.requires_grad for n, p in trainable.named_parameters() if "lora_" in n)
    trained = _guided(model.eval(), tokenizer)
    _assert_same_generation(_guided(loaded, tokenizer), trained)

    merged = loaded.merge_and_unload()  # for deployment: the adapter folded into the trunk's weights
    assert not merged.has_peft_adapter
    assert not torch.equal(merged.pretrained_model.transformer.h[0].attn.c_attn.weight,
                           frozen["transformer.h.0.attn.c_attn.weight"])
    _assert_same_generation(_guided(merged, tokenizer), trained)
    merged.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    _assert_same_generation(_guided(AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "merged"),
                                    tokenizer), trained)


def test_ilql_with_lora_on_gpt2_small_trains_under_5_percent_of_the_parameters():
    """Counted on the meta device: GPT-2 small's shape, LoRA r=8 on PEFT's default (c_attn) modules."""
    with torch.device("meta"):
        model = AutoModelForCausalLMWithILQLHeads.from_causal_lm(AutoModelForCausalLM.from_config(GPT2Config()))
        model.add_peft_adapter(LoraConfig(r=8, lora_alpha=16))
    counts = trainable_parameters(model)
    print(f"ILQL + LoRA r=8 on GPT-2 small: {counts}")
    assert counts["total_parameters"] > 124_000_000 and counts["trainable_fraction"] < 0.05


def test_training_resumes_from_a_lora_checkpoint_to_the_same_weights(tokenizer, tmp_path):
    """Resuming from step 2 of 4 restores the adapter, the heads and their targets: the same result."""
    def run(name, resume=None):
        base = _base_on_disk(tokenizer, tmp_path / "base", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        args = _args(ILQLConfig, tmp_path, name, max_steps=4, save_strategy="steps", save_steps=2, alpha=0.5,
                     per_device_train_batch_size=8)
        trainer = ILQLTrainer(model=base, args=args, train_dataset=bandit_rows(32), processing_class=tokenizer,
                              peft_config=LoraConfig(r=4, lora_alpha=8))
        trainer.train(resume_from_checkpoint=resume)
        return trainer.model.state_dict()

    straight = run("straight")
    resumed = run("resumed", resume=str(tmp_path / "straight" / "checkpoint-2"))
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, atol=1e-6, rtol=1e-6, msg=key)


@pytest.mark.parametrize("algorithm", ["bc", "mc"])
def test_bc_and_mc_train_only_the_adapter_and_heads(tokenizer, tmp_path, algorithm):
    config_class, trainer_class = {"bc": (BCConfig, BCTrainer), "mc": (MCConfig, MCTrainer)}[algorithm]
    base = _base_on_disk(tokenizer, tmp_path / "base")
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    trainer = trainer_class(model=base, args=_args(config_class, tmp_path, algorithm, max_steps=2, learning_rate=1e-2),
                            train_dataset=bandit_rows(32), processing_class=tokenizer,
                            peft_config=LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"))
    trainer.train()
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith(("q_heads.", "v_head.")) for n in trainable)
    trunk = model if algorithm == "bc" else model.pretrained_model
    for key, value in _trunk_weights(trunk).items():
        assert torch.equal(value, frozen[key]), key
    trainer.save_model()
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    if algorithm == "bc":  # a plain adapter of a causal LM: transformers loads base + adapter by itself
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "bc")
    else:
        reloaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "mc")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model.eval()(ids).logits)


def test_calm_trains_an_adapter_and_its_outcome_head_in_full(tmp_path):
    from lmrl.tasks.flight_booking import generate_flight_episodes

    rows = [r.as_row() for r in generate_flight_episodes(16, seed=0, num_flights=3, progress=False)]
    model, tokenizer = build_tiny(rows, hidden_size=32, num_layers=1, vocab_size=300)
    model.save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    args = CALMConfig(output_dir=str(tmp_path / "calm"), outcome_task="flight_booking", max_steps=2,
                      per_device_train_batch_size=8, learning_rate=1e-2, report_to="none", save_strategy="no",
                      disable_tqdm=True, max_length=1024)
    trainer = CALMTrainer(model=base, args=args, train_dataset=rows, processing_class=tokenizer,
                          peft_config=LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"),
                          outcome_label=outcome_label, relabel=relabel_row)
    head_before = {k: v.clone() for k, v in trainer.model.outcome_head.state_dict().items()}
    trainer.train()
    head, model = trainer.model.outcome_head, trainer.model.lm  # the LM (adapted) and its head, trained together
    assert all(p.requires_grad for p in head.parameters())
    assert any(not torch.equal(v, head_before[k]) for k, v in head.state_dict().items())
    for key, value in _trunk_weights(model).items():
        assert torch.equal(value, frozen[key]), key
    trainer.save_model()
    saved = OutcomeHead.load(tmp_path / "calm")
    for key, value in saved.state_dict().items():
        assert torch.equal(value, head.state_dict()[key])
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "calm")
    ids = torch.tensor([tokenizer("Hello, I need a flight.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model.eval()(ids).logits)


def test_chai_refuses_a_peft_config_in_words(tokenizer, tmp_path):
    from lmrl import CHAIConfig, CHAITrainer

    with pytest.raises(ValueError, match="nothing for peft_config to adapt"):
        CHAITrainer(proposal_model=tiny_causal_lm(tokenizer), args=_args(CHAIConfig, tmp_path, "chai"),
                    train_dataset=bandit_rows(4), processing_class=tokenizer, peft_config=LoraConfig(r=4))


def test_a_second_adapter_on_an_adapted_trunk_is_refused(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer))
    model.add_peft_adapter(LoraConfig(r=4))
    with pytest.raises(ValueError, match="already has a PEFT adapter"):
        model.add_peft_adapter(LoraConfig(r=4))


# Models that tie their output layer to the input embedding (SmolLM2, Llama 3.2 1B/3B, Qwen2.5 0.5B-3B,
# Gemma) with LoRA on every linear layer: PEFT nests the LM one level deeper, under other module names.
TIED = ["llama", "qwen2"]


def _tied_base_on_disk(tokenizer, path, architecture):
    base = _base_on_disk(tokenizer, path, architecture, tie_word_embeddings=True)
    assert _is_tied(base)
    return base


def _is_tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


def _all_linear(**kwargs):
    return LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", **kwargs)


@pytest.mark.parametrize("architecture", TIED)
def test_lora_ilql_on_a_tied_embedding_model_saves_reloads_resumes_and_merges(tokenizer, tmp_path, architecture):
    def run(name, max_steps, resume=None):
        base = _tied_base_on_disk(tokenizer, tmp_path / "base", architecture)
        args = _args(ILQLConfig, tmp_path, name, max_steps=max_steps, save_strategy="steps", save_steps=2,
                     alpha=0.5, per_device_train_batch_size=8, learning_rate=1e-2)
        trainer = ILQLTrainer(model=base, args=args, train_dataset=bandit_rows(32), processing_class=tokenizer,
                              peft_config=_all_linear())
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    trainer = run("straight", 4)
    model = trainer.model.eval()
    assert _is_tied(model.pretrained_model)
    trainer.save_model()
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "straight")
    assert loaded.has_peft_adapter and _is_tied(loaded.pretrained_model)
    expected = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    trained = _guided(model, tokenizer)
    _assert_same_generation(_guided(loaded, tokenizer), trained)

    resumed = run("resumed", 4, resume=str(tmp_path / "straight" / "checkpoint-2")).model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(resumed[key], value, atol=1e-6, rtol=1e-6, msg=key)

    merged = loaded.merge_and_unload()
    assert not merged.has_peft_adapter and _is_tied(merged.pretrained_model)
    _assert_same_generation(_guided(merged, tokenizer), trained)
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "merged")
    assert _is_tied(reloaded.pretrained_model)
    _assert_same_generation(_guided(reloaded, tokenizer), trained)


@pytest.mark.parametrize("architecture", TIED)
@pytest.mark.parametrize("algorithm", ["bc", "mc"])
def test_bc_and_mc_with_lora_on_a_tied_embedding_model_reload_and_merge(tokenizer, tmp_path, architecture,
                                                                          algorithm):
    config_class, trainer_class = {"bc": (BCConfig, BCTrainer), "mc": (MCConfig, MCTrainer)}[algorithm]
    base = _tied_base_on_disk(tokenizer, tmp_path / "base", architecture)
    trainer = trainer_class(model=base, args=_args(config_class, tmp_path, algorithm, max_steps=2, learning_rate=1e-2),
                            train_dataset=bandit_rows(16), processing_class=tokenizer,
                            peft_config=_all_linear(task_type="CAUSAL_LM"))
    trainer.train()
    trainer.save_model()
    model = trainer.model.eval()
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    if algorithm == "bc":
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "bc")
        merged = model.merge_and_unload()
    else:
        reloaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "mc")
        merged = reloaded.merge_and_unload().pretrained_model
    assert _is_tied(merged)
    with torch.no_grad():
        expected = model(ids).logits
        torch.testing.assert_close(reloaded(ids).logits, expected)
        torch.testing.assert_close(merged(ids).logits if algorithm == "bc" else reloaded(ids).logits, expected)


@pytest.mark.parametrize("architecture", TIED)
def test_calm_with_lora_on_a_tied_embedding_model_reloads_and_resumes(tmp_path, architecture):
    from lmrl.tasks.flight_booking import generate_flight_episodes

    rows = [r.as_row() for r in generate_flight_episodes(8, seed=0, num_flights=3, progress=False)]
    _, tokenizer = build_tiny(rows, vocab_size=300)

    def run(name, resume=None):
        base = _tied_base_on_disk(tokenizer, tmp_path / "base", architecture)
        args = CALMConfig(output_dir=str(tmp_path / name), outcome_task="flight_booking", max_steps=2,
                          per_device_train_batch_size=4, learning_rate=1e-2, report_to="none", save_strategy="steps",
                          save_steps=1, disable_tqdm=True, max_length=1024, seed=0)
        trainer = CALMTrainer(model=base, args=args, train_dataset=rows, processing_class=tokenizer,
                              peft_config=_all_linear(task_type="CAUSAL_LM"), outcome_label=outcome_label,
                              relabel=relabel_row)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    trainer = run("straight")
    trainer.save_model()
    straight = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    resumed = run("resumed", resume=str(tmp_path / "straight" / "checkpoint-1")).model.state_dict()
    for key, value in straight.items():  # the adapter and the outcome head
        torch.testing.assert_close(resumed[key], value, atol=1e-6, rtol=1e-6, msg=key)

    lm = trainer.model.lm.eval()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "straight")
    ids = torch.tensor([tokenizer("Hello, I need a flight.")["input_ids"]])
    with torch.no_grad():
        expected = lm(ids).logits
        torch.testing.assert_close(reloaded(ids).logits, expected)
        merged = lm.merge_and_unload()
        assert _is_tied(merged)
        torch.testing.assert_close(merged(ids).logits, expected)


def test_load_best_model_at_end_loads_the_best_lora_checkpoint(tokenizer, tmp_path):
    """A LoRA checkpoint holds the adapter and the heads, no full weights: the trainer loads the best one
    as a resume does (transformers would warn and keep the last model)."""
    base = _base_on_disk(tokenizer, tmp_path / "base")

    def trainer(name, **fields):
        args = _args(ILQLConfig, tmp_path, name, max_steps=6, per_device_train_batch_size=8, **fields)
        set_seed(0)
        return ILQLTrainer(model=base, args=args, train_dataset=bandit_rows(32), eval_dataset=bandit_rows(8),
                           processing_class=tokenizer, peft_config=LoraConfig(r=4, lora_alpha=8))

    best_run = trainer("best", eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                       load_best_model_at_end=True, metric_for_best_model="eval_loss",
                       greater_is_better=True)  # the worst loss: an early checkpoint, not the last
    best_run.train()
    best = best_run.state.best_model_checkpoint
    assert not best.endswith("checkpoint-6")
    reference = trainer("reference")
    reference._load_from_checkpoint(best)
    expected, last = reference.model.state_dict(), best_run.model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(last[key], value, msg=key)
