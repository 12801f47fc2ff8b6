"""Trainers end to end on small real data."""

import pytest
import torch
from transformers import AutoModelForCausalLM, pipeline, set_seed

from lmrl import (
    AutoModelForCausalLMWithILQLHeads,
    BCConfig,
    BCTrainer,
    ILQLConfig,
    ILQLTrainer,
    MCConfig,
    MCTrainer,
    encode_prompt,
)
from lmrl.models.tiny import tiny_causal_lm

PROMPT = "Pick a door:"


def bandit_rows(n=280, every=7):
    """One state, two replies: ' red' (reward 0) most of the time, ' blue' (reward 1) every 7th row."""
    return [
        {
            "messages": [
                {"role": "user", "content": PROMPT},
                {"role": "assistant", "content": " blue" if i % every == 0 else " red", "reward": float(i % every == 0)},
            ]
        }
        for i in range(n)
    ]


def _args(config_class, tmp_path, name, **overrides):
    defaults = dict(
        output_dir=str(tmp_path / name), per_device_train_batch_size=16, learning_rate=1e-3, num_train_epochs=12,
        save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=20, seed=0,
    )
    defaults.update(overrides)
    return config_class(**defaults)


def _reply(model, tokenizer, **generate_kwargs):
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                         **generate_kwargs)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_ilql_prefers_the_rewarded_reply_that_the_data_rarely_shows(tokenizer, tmp_path):
    rows = bandit_rows()
    set_seed(0)
    bc = BCTrainer(model=tiny_causal_lm(tokenizer), args=_args(BCConfig, tmp_path, "bc"), train_dataset=rows,
                   processing_class=tokenizer)
    bc.train()
    assert _reply(bc.model.eval(), tokenizer) == " red"

    set_seed(0)
    ilql = ILQLTrainer(model=tiny_causal_lm(tokenizer), args=_args(ILQLConfig, tmp_path, "ilql", alpha=0.5, beta=8.0),
                       train_dataset=rows, processing_class=tokenizer)
    ilql.train()
    model = ilql.model.eval()
    assert _reply(model, tokenizer) == " blue"
    assert _reply(model.pretrained_model, tokenizer) == " red"  # its own pi_beta still imitates the data

    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    assert generator(PROMPT, max_new_tokens=3, do_sample=False, return_full_text=False)[0]["generated_text"] == " blue"

    ilql.save_model()
    import lmrl  # noqa: F401

    reloaded = AutoModelForCausalLM.from_pretrained(ilql.args.output_dir)
    assert _reply(reloaded, tokenizer) == " blue"


def test_monte_carlo_regression_ranks_the_rewarded_reply_first(tokenizer, tmp_path):
    set_seed(0)
    trainer = MCTrainer(model=tiny_causal_lm(tokenizer), args=_args(MCConfig, tmp_path, "mc", num_train_epochs=6),
                        train_dataset=bandit_rows(), processing_class=tokenizer)
    trainer.train()
    model = trainer.model.eval()
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    with torch.no_grad():
        hidden = model.pretrained_model(ids, output_hidden_states=True).hidden_states[-1][:, -1]
    red, blue = (tokenizer.convert_tokens_to_ids(t) for t in ("Ġred", "Ġblue"))
    q = model.min_q(hidden, torch.tensor([[red, blue]]))[0]
    assert q[1] > q[0] + 0.3


def test_monte_carlo_models_hold_no_target_heads_and_ilql_gives_them_back(tokenizer, tmp_path):
    from safetensors.torch import load_file

    mc = MCTrainer(model=tiny_causal_lm(tokenizer), args=_args(MCConfig, tmp_path, "mc", max_steps=2),
                   train_dataset=bandit_rows(32), processing_class=tokenizer)
    assert mc.model.target_q_heads is None and not mc.model.config.target_heads
    mc.train()
    mc.save_model()
    saved = load_file(tmp_path / "mc" / "model.safetensors")
    assert not any(key.startswith("target_q_heads") for key in saved) and "q_heads.0.bias" in saved
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "mc")
    assert loaded.target_q_heads is None
    with pytest.raises(ValueError, match="built without target heads.*add_target_heads"):
        loaded.update_target_heads(0.5)

    ilql = ILQLTrainer(model=loaded, args=_args(ILQLConfig, tmp_path, "ilql", max_steps=2),
                       train_dataset=bandit_rows(32), processing_class=tokenizer)
    targets = ilql.model.target_q_heads
    assert targets is not None and ilql.model.config.target_heads
    for target, online in zip(targets.parameters(), ilql.model.q_heads.parameters()):
        assert target.dtype == torch.float32 and torch.equal(target, online.float())
    ilql.train()  # TD learning runs and moves the targets
    assert any(not torch.equal(t, o.float()) for t, o in zip(targets.parameters(), ilql.model.q_heads.parameters()))
    again = MCTrainer(model=ilql.model, args=_args(MCConfig, tmp_path, "mc2", max_steps=1),
                      train_dataset=bandit_rows(8), processing_class=tokenizer)
    assert again.model.target_q_heads is None


@pytest.mark.parametrize(("architecture", "chat_template", "tied"),
                         [("gpt2", False, True), ("llama", False, False), ("qwen2", True, False), ("gpt_neox", True, False),
                          ("llama", True, True), ("qwen2", False, True)])  # tied: the output layer is the embedding
def test_ilql_trains_saves_loads_and_generates_on_each_architecture(request, tmp_path, architecture, chat_template,
                                                                     tied):
    tokenizer = request.getfixturevalue("chat_tokenizer" if chat_template else "tokenizer")
    set_seed(0)
    args = _args(ILQLConfig, tmp_path, architecture, num_train_epochs=1, max_steps=3, logging_steps=1)
    base = tiny_causal_lm(tokenizer, architecture, tie_word_embeddings=tied)
    assert (base.get_output_embeddings().weight is base.get_input_embeddings().weight) == tied
    trainer = ILQLTrainer(model=base, args=args,
                          train_dataset=bandit_rows(48), processing_class=tokenizer)
    row = trainer.train_dataset[1]  # " red", rendered through the chat template when the tokenizer has one
    actions = [i for i, a in zip(row["input_ids"], row["action_mask"]) if a]
    assert tokenizer.decode(actions) == " red" + tokenizer.eos_token
    assert ("<|im_start|>assistant\n" in tokenizer.decode(row["input_ids"])) == chat_template
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"loss/q", "loss/v", "loss/cql", "loss/bc", "values/q", "values/v", "values/advantage",
            "diagnostics/advantage_data", "diagnostics/advantage_sampled", "diagnostics/dr3"} <= logged
    trainer.save_model()
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(args.output_dir)
    assert loaded.config.text_config.model_type == architecture
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert _reply(loaded.eval(), tokenizer) == _reply(trainer.model.eval(), tokenizer)


def test_target_heads_follow_polyak_schedule_in_the_optimizer_step(tokenizer, tmp_path):
    """With a zero learning rate the online heads stay put, so after 4 optimizer steps with an update
    every 2nd step the gap to the online heads shrinks by (1 - alpha)^2 exactly."""
    set_seed(0)
    args = _args(ILQLConfig, tmp_path, "polyak", learning_rate=0.0, max_steps=4, alpha=0.5,
                 target_update_interval=2, weight_decay=0.0, per_device_train_batch_size=4,
                 gradient_accumulation_steps=2)
    trainer = ILQLTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=bandit_rows(64),
                          processing_class=tokenizer)
    model = trainer.model
    with torch.no_grad():
        for p in model.q_heads.parameters():
            p.normal_()
        for p in model.target_q_heads.parameters():
            p.zero_()
    online = [p.clone() for p in model.q_heads.parameters()]
    trainer.train()
    for target, q in zip(model.target_q_heads.parameters(), online):
        assert torch.allclose(target, q * (1 - 0.5**2), atol=1e-6)


def test_filtered_bc_trains_on_the_top_fraction_only(tokenizer, tmp_path):
    args = _args(BCConfig, tmp_path, "pbc", filter_top=0.1, max_steps=1)
    trainer = BCTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=bandit_rows(70),
                        processing_class=tokenizer)
    assert len(trainer.train_dataset) == 10
    assert set(trainer.train_dataset["returns"]) == {1.0}


def test_reward_conditioned_bc_puts_the_return_in_the_context(tokenizer, tmp_path):
    args = _args(BCConfig, tmp_path, "rcbc", reward_conditioned=True, max_steps=1)
    trainer = BCTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=bandit_rows(14),
                        processing_class=tokenizer)
    texts = [tokenizer.decode(ids) for ids in trainer.train_dataset["input_ids"]]
    assert sum("Return: 1.0" in t for t in texts) == 2 and sum("Return: 0.0" in t for t in texts) == 12


def test_a_tokenizer_larger_than_the_model_vocabulary_is_refused(tokenizer, tmp_path):
    small = tiny_causal_lm(tokenizer, vocab_size=len(tokenizer) - 10)
    with pytest.raises(ValueError, match="resize_token_embeddings"):
        ILQLTrainer(model=small, args=_args(ILQLConfig, tmp_path, "vocab"), train_dataset=bandit_rows(8),
                    processing_class=tokenizer)


def test_fresh_heads_start_at_the_lowest_return_so_unseen_tokens_are_not_optimistic(tokenizer, tmp_path):
    rows = [{"messages": [{"role": "user", "content": PROMPT},
                          {"role": "assistant", "content": " red", "reward": -3.0 - i % 2}]} for i in range(8)]
    trainer = ILQLTrainer(model=tiny_causal_lm(tokenizer), args=_args(ILQLConfig, tmp_path, "pess", max_steps=1),
                          train_dataset=rows, processing_class=tokenizer)
    model = trainer.model
    hidden = torch.randn(2, model.config.text_config.hidden_size)
    assert torch.allclose(model.min_q(hidden), torch.full((2, len(tokenizer)), -4.0))
    assert torch.allclose(model.v_head(hidden), torch.full((2,), -4.0))
    assert torch.equal(model.target_q_heads[0].bias, model.q_heads[0].bias)

    loaded_args = _args(ILQLConfig, tmp_path, "pess2", max_steps=1)
    again = ILQLTrainer(model=model, args=loaded_args, train_dataset=bandit_rows(8), processing_class=tokenizer)
    assert torch.allclose(again.model.min_q(hidden), torch.full((2, len(tokenizer)), -4.0))  # trained heads kept
