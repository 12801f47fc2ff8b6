"""Training with the vocabulary-sized CE terms kept factored and chunked gives the plain losses and gradients."""

import logging

import pytest
import torch
from transformers import GPT2LMHeadModel

from lmrl import AutoModelForCausalLMWithILQLHeads
from lmrl.losses import ProjectedLogits, ilql_diagnostics, ilql_loss
from lmrl.models.policy_logits import PolicyLogits
from lmrl.models.tiny import tiny_causal_lm, tiny_config

LOSS_KWARGS = {"tau": 0.7, "gamma": 0.9, "cql_weight": 0.5, "bc_weight": 1.0, "awac_beta": 0.5}


def _batch(vocab_size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (2, 9), generator=generator)
    attention = torch.tensor([[1] * 9, [1] * 7 + [0] * 2])
    actions = torch.tensor([[0, 0, 1, 1, 0, 0, 1, 1, 1], [0, 1, 1, 1, 0, 1, 1, 0, 0]])
    rewards = torch.zeros(2, 9)
    rewards[0, 8], rewards[1, 6] = 1.0, -1.0
    return {"input_ids": ids, "attention_mask": attention, "action_mask": actions, "rewards": rewards,
            "dones": torch.tensor([1.0, 0.0])}


def _loss_and_grads(model, batch, chunk_size):
    model.zero_grad(set_to_none=True)
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    action_mask=batch["action_mask"], full_logits=chunk_size == 0)
    loss, _ = ilql_loss(outputs, **batch, **LOSS_KWARGS, chunk_size=chunk_size)
    loss.backward()
    return outputs, loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _model(tokenizer, architecture, head_type="tied"):
    torch.manual_seed(0)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer, architecture), head_type=head_type)
    with torch.no_grad():
        for p in [*model.q_heads.parameters(), *model.v_head.parameters()]:
            p.normal_(0.0, 0.3)
    return model.eval()  # no dropout: both computations see the same network


@pytest.mark.parametrize(("architecture", "head_type"), [("gpt2", "tied"), ("llama", "tied"), ("gpt2", "untied")])
@pytest.mark.parametrize("chunk_size", [3, None])  # None: the default, these small logits fit the memory budget
def test_chunked_ilql_loss_and_gradients_equal_the_materialized_ones(tokenizer, architecture, head_type, chunk_size):
    model = _model(tokenizer, architecture, head_type)
    batch = _batch(len(tokenizer))
    plain_out, plain_loss, plain_grads = _loss_and_grads(model, batch, chunk_size=0)
    chunked_out, chunked_loss, chunked_grads = _loss_and_grads(model, batch, chunk_size=chunk_size)
    assert plain_out.logits is not None and plain_out.logits.shape[1] == 9
    assert chunked_out.logits is None or chunked_out.logits.shape[1] == 1  # never the LM's [B, T, V] logits
    assert isinstance(chunked_out.policy_logits, ProjectedLogits)
    assert all(isinstance(q, ProjectedLogits) for q in chunked_out.q_logits)
    torch.testing.assert_close(chunked_loss, plain_loss)
    assert plain_grads.keys() == chunked_grads.keys()
    assert "pretrained_model.lm_head.weight" in chunked_grads or any("wte" in n or "embed" in n for n in chunked_grads)
    diagnostics = ilql_diagnostics(chunked_out, batch["input_ids"], batch["action_mask"])  # samples chunk by chunk
    assert torch.isfinite(diagnostics["diagnostics/advantage_sampled"])
    for name, grad in plain_grads.items():
        scale = max(1.0, grad.abs().max().item())  # float-noise tolerance relative to the gradient's size
        torch.testing.assert_close(chunked_grads[name], grad, atol=1e-6 * scale, rtol=1e-4, msg=name)


def test_softcapped_logits_are_materialized_for_the_bc_term(tokenizer):
    """Gemma 2 soft-caps its logits, so they are not a linear map of the hidden state."""
    torch.manual_seed(0)
    base = tiny_causal_lm(tokenizer, "gemma2", head_dim=16, final_logit_softcapping=0.5)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(base)
    batch = _batch(len(tokenizer))
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    action_mask=batch["action_mask"])
    steps = batch["action_mask"][:, 1:].bool()
    assert isinstance(outputs.policy_logits, torch.Tensor)
    torch.testing.assert_close(outputs.policy_logits, outputs.logits[:, :-1][steps])


class DoubledLogits(GPT2LMHeadModel):
    """A model that changes its logits after the output layer, without saying so in its config."""

    def forward(self, input_ids=None, attention_mask=None, logits_to_keep=0, **kwargs):
        out = super().forward(input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep, **kwargs)
        out.logits = 2.0 * out.logits
        return out


def test_a_model_whose_logits_differ_from_its_projection_is_detected_on_the_first_call(tokenizer, caplog):
    torch.manual_seed(0)
    model = DoubledLogits(tiny_config(tokenizer, "gpt2"))
    batch = _batch(len(tokenizer))
    steps = batch["action_mask"][:, 1:].bool()
    policy_logits = PolicyLogits()
    with caplog.at_level(logging.WARNING):
        out, _, logits = policy_logits(model, steps, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert policy_logits.factored is False and "not a linear map" in caplog.text
    torch.testing.assert_close(logits, out.logits[:, :-1][steps])  # the model's own (doubled) logits
