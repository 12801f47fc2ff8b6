"""Mixed precision, activation checkpointing and gradient accumulation give the plain fp32 run's losses."""

import pytest
import torch
from test_trainers import _args, bandit_rows
from transformers import set_seed

from lmrl import AutoModelForCausalLMWithILQLHeads, ILQLConfig, ILQLTrainer
from lmrl.compat import enable_activation_checkpointing
from lmrl.losses.ilql import ilql_loss
from lmrl.models.tiny import tiny_causal_lm

NO_DROPOUT = {"gpt2": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}, "llama": {}}


def _train(tokenizer, tmp_path, name, **overrides):
    """4 ILQL steps at a global batch of 8 on rows of equal length: every micro batch has the same
    number of action tokens, so the mean over 2 micro batches of 4 is the mean over the batch of 8."""
    set_seed(0)
    settings = dict(per_device_train_batch_size=8, max_steps=4, logging_steps=1, alpha=0.5)
    args = _args(ILQLConfig, tmp_path, name, **(settings | overrides))
    trainer = ILQLTrainer(model=tiny_causal_lm(tokenizer, **NO_DROPOUT["gpt2"]), args=args,
                          train_dataset=bandit_rows(32), processing_class=tokenizer)
    dtypes, layer_calls = [], []
    trainer.model.pretrained_model.register_forward_hook(lambda m, i, out: dtypes.append(out.logits.dtype))
    trainer.model.get_decoder().h[0].mlp.register_forward_pre_hook(lambda *_: layer_calls.append(1))
    trainer.train()
    losses = torch.tensor([e["loss"] for e in trainer.state.log_history if "loss" in e])
    return losses, trainer.model, set(dtypes), len(layer_calls) / len(dtypes)


@pytest.fixture(scope="module")
def fp32_run(tokenizer, tmp_path_factory):
    return _train(tokenizer, tmp_path_factory.mktemp("fp32"), "fp32")


# (training arguments, tolerance on losses and on the final weights, dtype the trunk computes in)
SETTINGS = {
    "accumulation": (dict(per_device_train_batch_size=4, gradient_accumulation_steps=2), 1e-5, torch.float32),
    "checkpointing": (dict(activation_checkpointing=True), 1e-6, torch.float32),
    "bf16": (dict(bf16=True, use_cpu=True), 1e-2, torch.bfloat16),  # CPU autocast; bf16 keeps ~3 digits
    # fp16 autocast with loss scaling is GPU-only: on a CPU, accelerate runs the same arguments in fp32
    "fp16 on cpu": (dict(fp16=True, use_cpu=True), 1e-6, torch.float32),
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_training_matches_the_fp32_run_within_tolerance(tokenizer, tmp_path, fp32_run, setting):
    overrides, tolerance, dtype = SETTINGS[setting]
    reference_losses, reference, _, _ = fp32_run
    losses, model, dtypes, layer_runs = _train(tokenizer, tmp_path, setting, **overrides)
    assert dtypes == {dtype}
    assert layer_runs == (2 if setting == "checkpointing" else 1)  # checkpointing reruns each layer in backward
    assert len(losses) == len(reference_losses) == 4
    torch.testing.assert_close(losses, reference_losses, rtol=tolerance, atol=tolerance)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=tolerance, atol=tolerance, msg=name)
    for p, q in zip(model.target_q_heads.parameters(), reference.target_q_heads.parameters()):
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, q, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_activation_checkpointing_recomputes_the_trunk_and_gives_the_same_loss_and_gradients(tokenizer, architecture):
    torch.manual_seed(0)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(
        tiny_causal_lm(tokenizer, architecture, **NO_DROPOUT[architecture])).train()
    ids = torch.randint(1, len(tokenizer), (4, 12))
    mask, actions = torch.ones_like(ids), (torch.arange(12) >= 6).long().expand(4, -1)
    rewards, dones = torch.zeros(4, 12), torch.ones(4)
    rewards[:, -1] = 1.0
    layer = model.get_decoder().h[0] if architecture == "gpt2" else model.get_decoder().layers[0]
    calls = []  # a pre-hook inside the layer: the checkpoint wraps the layer's forward (not its hooks), and
    # the recomputation stops right after the last tensor the backward needs
    layer.mlp.register_forward_pre_hook(lambda *_: calls.append(1))

    def loss_and_grads():
        model.zero_grad()
        calls.clear()
        outputs = model(input_ids=ids, attention_mask=mask, action_mask=actions)
        loss, _ = ilql_loss(outputs, ids, mask, actions, rewards, dones, bc_weight=1.0)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)

    loss, grads, plain_calls = loss_and_grads()
    enable_activation_checkpointing(model)  # activation_checkpointing_enable() on transformers >= 5.23
    checkpointed_loss, checkpointed_grads, checkpointed_calls = loss_and_grads()
    assert (plain_calls, checkpointed_calls) == (1, 2)  # the layer ran again in the backward pass
    torch.testing.assert_close(checkpointed_loss, loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == checkpointed_grads.keys() and any(n.startswith("pretrained_model.") for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_a_bf16_model_keeps_fp32_target_heads_so_small_polyak_steps_are_not_rounded_away(tokenizer, tmp_path):
    """alpha = 0.005 moves a target by less than bf16's resolution (1/128 at 1.0): stored in bf16,
    most of each Polyak step would round to nothing."""
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer).to(torch.bfloat16))
    assert model.q_heads[0].bias.dtype == torch.bfloat16 and model.target_q_heads[0].bias.dtype == torch.float32
    with torch.no_grad():
        for p in model.q_heads.parameters():
            p.normal_()
        for p in model.target_q_heads.parameters():
            p.fill_(1.0)
    for _ in range(10):
        model.update_target_heads(0.005)
    for target, online in zip(model.target_q_heads.parameters(), model.q_heads.parameters()):
        expected = 1.0 + (1 - 0.995**10) * (online.float() - 1.0)
        torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-6)

    ids = torch.randint(1, len(tokenizer), (2, 8))
    actions = (torch.arange(8) >= 4).long().expand(2, -1)
    outputs = model(input_ids=ids, attention_mask=torch.ones_like(ids), action_mask=actions)
    assert outputs.q_values.dtype == torch.bfloat16 and outputs.target_q_values.dtype == torch.float32
    loss, _ = ilql_loss(outputs, ids, torch.ones_like(ids), actions, torch.zeros(2, 8), torch.ones(2))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)

    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.q_heads[0].bias.dtype == torch.bfloat16 and loaded.target_q_heads[0].bias.dtype == torch.float32
