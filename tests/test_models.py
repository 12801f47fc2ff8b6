"""The ILQL-heads model: wrapping, decoding, saving and loading, target updates."""

import json
import logging

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, pipeline, set_seed

from lmrl import AutoModelForCausalLMWithILQLHeads, ValueGuidedLogitsProcessor, encode_prompt
from lmrl.generation import guided_scores
from lmrl.models.tiny import tiny_causal_lm
from lmrl.ops.guidance import top_k_tokens

ARCHITECTURES = ["gpt2", "llama"]


def _base(tokenizer, architecture="gpt2", seed=0):
    torch.manual_seed(seed)
    return tiny_causal_lm(tokenizer, architecture).eval()


def _randomize_heads(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.q_heads.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        for p in model.v_head.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)


def _prompt(tokenizer, text="Pick a door:"):
    return torch.tensor([encode_prompt(tokenizer, text)])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_beta_zero_decodes_exactly_like_the_base_model(tokenizer, architecture):
    base = _base(tokenizer, architecture)
    ids = _prompt(tokenizer)
    greedy = base.generate(input_ids=ids, max_new_tokens=12, do_sample=False)
    set_seed(3)
    sampled = base.generate(input_ids=ids, max_new_tokens=12, do_sample=True, top_k=0)

    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(base, beta=0.0)
    _randomize_heads(model)
    assert torch.equal(model.generate(input_ids=ids, max_new_tokens=12, do_sample=False), greedy)
    set_seed(3)
    assert torch.equal(model.generate(input_ids=ids, max_new_tokens=12, do_sample=True, top_k=0), sampled)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_left_padded_batches_decode_like_the_base_model(tokenizer, architecture):
    """generate() derives position ids from the padding; the wrapper must pass them to the base."""
    base = _base(tokenizer, architecture)
    short, long = encode_prompt(tokenizer, "Pick a door:"), encode_prompt(tokenizer, "Pick a door: red door blue door")
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (len(long) - len(short)) + short, long])
    mask = torch.tensor([[0] * (len(long) - len(short)) + [1] * len(short), [1] * len(long)])
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": pad, "output_scores": True,
              "return_dict_in_generate": True}
    expected = base.generate(input_ids=ids, attention_mask=mask, **kwargs)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(base, beta=0.0)
    out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    assert torch.equal(out.sequences, expected.sequences)
    for got, want in zip(out.scores, expected.scores):
        torch.testing.assert_close(got, want)


def test_wrapping_keeps_the_base_weights_and_starts_tied_q_at_zero(tokenizer):
    base = _base(tokenizer)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(base)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    hidden = torch.randn(3, base.config.hidden_size)
    assert torch.count_nonzero(model.min_q(hidden)) == 0


def test_guidance_moves_greedy_decoding_to_the_token_with_the_highest_advantage(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0, guidance_top_k=0)
    ids = _prompt(tokenizer)
    plain = model.pretrained_model.generate(input_ids=ids, max_new_tokens=1, do_sample=False)[0, -1]
    with torch.no_grad():
        logits = model.pretrained_model(ids).logits[0, -1]
    runner_up = logits.topk(2).indices[1]
    with torch.no_grad():
        for head in model.q_heads:
            head.bias[runner_up] = 5.0  # advantage of 5 * beta 4 beats any log-prob gap here
    guided = model.generate(input_ids=ids, max_new_tokens=1, do_sample=False)[0, -1]
    assert plain != runner_up and guided == runner_up


def test_fast_path_equals_full_vocabulary_guidance_on_the_surviving_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 40)
    q_table = torch.randn(2, 3, 40)
    values = torch.randn(2, 3)

    def q_fn(ids):
        return q_table if ids is None else q_table.gather(-1, ids)

    full = guided_scores(logits, q_fn, values, beta=2.0, advantage_clip=1.0, guidance_top_k=0)
    fast = guided_scores(logits, q_fn, values, beta=2.0, advantage_clip=1.0, guidance_top_k=7)
    top = logits.topk(7, dim=-1).indices
    assert torch.allclose(fast.gather(-1, top), full.gather(-1, top))
    assert torch.isinf(fast).sum() == 2 * 3 * (40 - 7)
    nucleus = guided_scores(logits, q_fn, values, beta=2.0, advantage_clip=1.0, guidance_top_k=7, guidance_top_p=0.3)
    assert torch.isfinite(nucleus).sum(-1).min() >= 1
    assert (torch.isfinite(nucleus).sum(-1) <= 7).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("top_p", [1.0, 0.5])
def test_fast_path_scores_are_the_documented_rule_on_the_top_k_tokens(dtype, top_p):
    """log_softmax(logits) + beta * clip(min Q - V), written out over the whole vocabulary, then the top-k kept."""
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 2, 5000, generator=generator) * 4).to(dtype)
    logits[0, 0, :10] = float("-inf")  # e.g. tokens an earlier processor banned
    q_table, values = torch.randn(3, 2, 5000, generator=generator), torch.randn(3, 2, generator=generator)

    def q_fn(ids):
        return q_table if ids is None else q_table.gather(-1, ids)

    log_probs = torch.log_softmax(logits.float(), dim=-1)
    top_log_probs, top = log_probs.topk(20, dim=-1)
    rule = log_probs + 3.0 * (q_table - values[..., None]).clamp(-1.5, 1.5)
    mass_before = top_log_probs.exp().cumsum(-1) - top_log_probs.exp()
    kept = rule.gather(-1, top).masked_fill(mass_before >= top_p, float("-inf"))
    expected = torch.full_like(rule, float("-inf")).scatter(-1, top, kept)
    for inplace in (False, True):
        given = logits.clone()
        scores = guided_scores(given, q_fn, values, beta=3.0, advantage_clip=1.5, guidance_top_k=20, guidance_top_p=top_p,
                               inplace=inplace)
        assert scores.dtype == torch.float32
        torch.testing.assert_close(scores, expected)
        assert (scores.data_ptr() == given.data_ptr()) == (inplace and dtype == torch.float32)  # no new buffer


@pytest.mark.parametrize(("vocab", "k"), [(5000, 7), (4099, 3), (300, 50)])
def test_two_pass_top_k_finds_the_same_tokens_as_torch_topk(vocab, k):
    scores = torch.randn(3, 2, vocab, generator=torch.Generator().manual_seed(vocab))
    scores[0, 0, -1] = 100.0  # the best token in the padded last block
    values, ids = top_k_tokens(scores, k)
    expected_values, expected_ids = scores.topk(k, dim=-1)
    assert torch.equal(values, expected_values) and torch.equal(ids, expected_ids)


@pytest.mark.parametrize("head_type", ["tied", "untied"])
def test_q_on_selected_tokens_equals_the_full_vocabulary_q(tokenizer, head_type):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), head_type=head_type)
    _randomize_heads(model)
    hidden = torch.randn(4, model.config.text_config.hidden_size)
    ids = torch.randint(0, len(tokenizer), (4, 5))
    assert torch.allclose(model.min_q(hidden, ids), model.min_q(hidden).gather(-1, ids), atol=1e-5)


def test_target_heads_move_toward_online_heads_at_rate_alpha(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer))
    _randomize_heads(model)
    with torch.no_grad():
        for p in model.target_q_heads.parameters():
            p.fill_(1.0)
    online = [p.clone() for p in model.q_heads.parameters()]
    model.update_target_heads(0.25)
    for target, q in zip(model.target_q_heads.parameters(), online):
        assert torch.allclose(target, 0.75 * 1.0 + 0.25 * q)
        assert not target.requires_grad


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_save_load_round_trip_restores_heads_targets_and_settings(tokenizer, tmp_path, architecture):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer, architecture), beta=2.5).eval()
    _randomize_heads(model)
    model.update_target_heads(0.5)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))

    import lmrl  # noqa: F401  (registers the Auto classes)

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, AutoModelForCausalLMWithILQLHeads)
    assert loaded.config.beta == 2.5
    expected = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    ids = _prompt(tokenizer)
    assert torch.equal(
        loaded.generate(input_ids=ids, max_new_tokens=8, do_sample=False),
        model.generate(input_ids=ids, max_new_tokens=8, do_sample=False),
    )
    assert AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path, beta=0.0).config.beta == 0.0


def test_loading_with_a_different_head_type_is_refused(tokenizer, tmp_path):
    AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="head_type"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path, head_type="untied")


def test_a_narrower_head_shape_has_fewer_parameters_and_keeps_its_shape_through_saving(tokenizer, tmp_path):
    base = _base(tokenizer)
    hidden = base.config.hidden_size
    default = AutoModelForCausalLMWithILQLHeads.from_pretrained(base)
    narrow = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), head_hidden_size=hidden // 4)
    _randomize_heads(narrow)

    def head_params(model):
        return sum(p.numel() for m in (model.q_heads, model.v_head) for p in m.parameters())

    def mlps(width):  # two Q heads h -> width -> h and V h -> width -> 1, with their biases
        return 2 * (2 * hidden * width + width + hidden) + hidden * width + 2 * width + 1

    per_token_biases = 2 * default.get_output_embeddings().weight.shape[0]  # b_k of the two tied Q heads
    assert default.config.head_hidden_size == 2 * hidden  # the paper's width, written as a number, not None
    assert head_params(default) == mlps(2 * hidden) + per_token_biases
    assert head_params(narrow) == mlps(hidden // 4) + per_token_biases
    narrow.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path)
    assert loaded.config.head_hidden_size == hidden // 4 and head_params(loaded) == head_params(narrow)
    ids = _prompt(tokenizer)
    assert torch.equal(loaded.generate(input_ids=ids, max_new_tokens=6, do_sample=False),
                       narrow.generate(input_ids=ids, max_new_tokens=6, do_sample=False))
    with pytest.raises(ValueError, match="head_hidden_size"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path, head_hidden_size=hidden)


def test_a_config_saved_with_a_null_head_width_loads_its_2h_heads(tokenizer, tmp_path):
    # checkpoints written before configs carried the width say `"head_hidden_size": null` beside 2h-wide weights
    wide = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer))
    _randomize_heads(wide)
    wide.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**written, "head_hidden_size": None}))
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path)
    assert loaded.config.head_hidden_size == 2 * loaded.config.text_config.hidden_size == 128
    ids = _prompt(tokenizer)
    assert torch.equal(loaded.generate(input_ids=ids, max_new_tokens=6, do_sample=False),
                       wide.generate(input_ids=ids, max_new_tokens=6, do_sample=False))
    assert AutoConfig.from_pretrained(tmp_path).head_hidden_size == 128  # the trainers' and adapters' path
    loaded.save_pretrained(tmp_path / "again")  # and it is saved as a number from then on
    assert json.loads((tmp_path / "again" / "config.json").read_text())["head_hidden_size"] == 128


def test_a_plain_causal_lm_path_gets_fresh_heads(tokenizer, tmp_path):
    base = _base(tokenizer)
    base.save_pretrained(tmp_path)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path, beta=3.0)
    assert model.config.beta == 3.0 and model.config.text_config.model_type == "gpt2"
    for key, value in base.state_dict().items():
        assert torch.equal(model.pretrained_model.state_dict()[key], value)


def test_beam_search_keeps_the_beams_with_the_highest_guided_scores(tokenizer):
    """Beam search runs on the guided scores, through the KV cache and its beam reordering: each returned
    beam's score is the sum of its tokens' guided log-probabilities as a plain forward pass recomputes
    them, and the best beam scores at least as high as the greedy guided reply."""
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0).eval()
    _randomize_heads(model)
    ids = _prompt(tokenizer)
    config = GenerationConfig(max_new_tokens=5, num_beams=4, num_return_sequences=2, do_sample=False,
                              length_penalty=0.0, early_stopping=True, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=None,  # every beam runs the full 5 tokens
                              return_dict_in_generate=True, output_scores=True)
    out = model.generate(input_ids=ids, generation_config=config)

    def guided_sum(sequence, guided=model):
        with torch.no_grad():
            scores = guided(sequence[None]).logits[0, ids.shape[1] - 1 : -1].float().log_softmax(-1)
        return scores.gather(-1, sequence[ids.shape[1]:, None]).sum()

    assert out.sequences.shape == (2, ids.shape[1] + 5) and not torch.equal(out.sequences[0], out.sequences[1])
    for sequence, score in zip(out.sequences, out.sequences_scores):
        torch.testing.assert_close(score, guided_sum(sequence), rtol=1e-4, atol=1e-4)
    assert out.sequences_scores[0] >= out.sequences_scores[1]
    greedy = model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, eos_token_id=None,
                            pad_token_id=tokenizer.pad_token_id)[0]
    assert out.sequences_scores[0] >= guided_sum(greedy) - 1e-4
    model.config.beta = 0.0  # the same model unguided scores the beam otherwise: the guidance was used
    assert not torch.isclose(guided_sum(out.sequences[0]), out.sequences_scores[0], atol=1e-3)
    model.config.beta = 4.0
    cached = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    uncached = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_pipeline_accepts_the_model_without_warning(tokenizer, caplog):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0).eval()
    with caplog.at_level(logging.WARNING):
        generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
        out = generator("Pick a door:", max_new_tokens=4, do_sample=False)
    assert out[0]["generated_text"].startswith("Pick a door:")
    assert not [r for r in caplog.records if "not supported" in r.getMessage()]


def test_logits_processor_steers_a_frozen_lm_like_the_model_steers_itself(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0).eval()
    _randomize_heads(model)
    frozen = model.pretrained_model
    ids = _prompt(tokenizer)
    own = model.generate(input_ids=ids, max_new_tokens=10, do_sample=False)
    steered = frozen.generate(
        input_ids=ids, max_new_tokens=10, do_sample=False, logits_processor=[ValueGuidedLogitsProcessor(model)]
    )
    assert torch.equal(own, steered)
    unguided = frozen.generate(input_ids=ids, max_new_tokens=10, do_sample=False)
    assert not torch.equal(unguided, steered)


class _RecomputingProcessor(ValueGuidedLogitsProcessor):
    """Reference: rebuild the value model's state from scratch at every step."""

    def __call__(self, input_ids, scores):
        self._reset()
        return super().__call__(input_ids, scores)


def test_logits_processor_cache_follows_beam_reordering_and_left_padding(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0).eval()
    _randomize_heads(model)
    frozen = _base(tokenizer, seed=5)
    pad = tokenizer.pad_token_id
    short, long = encode_prompt(tokenizer, "Pick:"), encode_prompt(tokenizer, "Pick a door: which one?")
    ids = torch.tensor([[pad] * (len(long) - len(short)) + short, long])
    mask = (torch.arange(ids.shape[1]) >= len(long) - len(short)).long()
    attention_mask = torch.stack([mask, torch.ones_like(mask)])
    kwargs = dict(input_ids=ids, attention_mask=attention_mask, max_new_tokens=6, num_beams=3, do_sample=False,
                  pad_token_id=pad)
    cached = frozen.generate(**kwargs, logits_processor=[ValueGuidedLogitsProcessor(model, pad_token_id=pad)])
    reference = frozen.generate(**kwargs, logits_processor=[_RecomputingProcessor(model, pad_token_id=pad)])
    assert torch.equal(cached, reference)


def test_logits_processor_takes_the_prompt_attention_mask_when_pad_is_also_bos(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0).eval()
    _randomize_heads(model)
    frozen = _base(tokenizer, seed=5)
    pad = tokenizer.pad_token_id
    short, long = [pad] + encode_prompt(tokenizer, "Pick:"), encode_prompt(tokenizer, "Pick a door: which one?")
    ids = torch.tensor([[pad] * (len(long) - len(short)) + short, long])  # row 0 starts with a real BOS = pad
    attention_mask = (torch.arange(ids.shape[1]) >= len(long) - len(short)).long().expand(2, -1).clone()
    attention_mask[1] = 1
    kwargs = dict(input_ids=ids, attention_mask=attention_mask, max_new_tokens=5, num_beams=2, do_sample=False,
                  pad_token_id=pad)
    by_mask = frozen.generate(**kwargs, logits_processor=[ValueGuidedLogitsProcessor(model, attention_mask=attention_mask)])
    reference = frozen.generate(
        **kwargs, logits_processor=[_RecomputingProcessor(model, attention_mask=attention_mask)]
    )
    assert torch.equal(by_mask, reference)
    processor = ValueGuidedLogitsProcessor(model, attention_mask=attention_mask)
    processor._advance(ids)
    assert processor._mask[0].tolist() == attention_mask[0].tolist()  # the leading real BOS is kept


def test_guided_decoding_computes_q_and_v_for_the_last_position_and_top_k_tokens_only(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0, guidance_top_k=5).eval()
    _randomize_heads(model)
    seen = []
    model.v_head.register_forward_hook(lambda module, args, out: seen.append(("v", tuple(args[0].shape))))
    min_q = model.min_q
    model.min_q = lambda hidden, ids=None: seen.append(("q", (*hidden.shape[:-1], ids.shape[-1]))) or min_q(hidden, ids)
    ids = torch.cat([_prompt(tokenizer)] * 2)
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
    assert {kind for kind, _ in seen} == {"q", "v"}
    assert all(shape[:2] == (2, 1) for _, shape in seen)  # the prompt's last position, then one per step
    assert all(shape[-1] == 5 for kind, shape in seen if kind == "q")  # Q of the 5 surviving tokens


def test_stacked_q_heads_equal_the_heads_one_by_one_and_follow_their_updates(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), num_q_heads=3)
    _randomize_heads(model)
    hidden = torch.randn(2, 4, model.config.text_config.hidden_size)
    ids = torch.randint(0, len(tokenizer), (2, 4, 6))
    for _ in range(2):  # the second time after a change of the heads' weights: the stack is rebuilt
        one_by_one = model._q(model.q_heads, hidden, ids).min(dim=0).values
        with torch.inference_mode():
            stacked = model.min_q(hidden, ids)
        torch.testing.assert_close(stacked, one_by_one)
        with torch.no_grad():
            model.q_heads[1].mlp[0].weight.mul_(-2.0)
            model.q_heads[2].bias.add_(1.0)


def test_logits_processor_never_runs_the_value_models_vocabulary_projection(tokenizer):
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(_base(tokenizer), beta=4.0).eval()
    _randomize_heads(model)
    calls = []
    model.get_output_embeddings().register_forward_hook(lambda *args: calls.append(1))
    frozen = _base(tokenizer, seed=5)
    frozen.generate(input_ids=_prompt(tokenizer), max_new_tokens=4, do_sample=False,
                    logits_processor=[ValueGuidedLogitsProcessor(model)])
    assert calls == []
