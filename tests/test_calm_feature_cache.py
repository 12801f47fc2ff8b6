"""CALM on a frozen trunk's feature cache: the cache of the relabelled rows, a behaviour head trained by the LM
loss and shaped by the outcome head's loss, and a heads-only checkpoint that `lmrl eval` decodes with the base
model plus the behaviour head (docs/guides/feature-cache.md)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, set_seed

import lmrl.trainers.feature_cache as feature_cache
from lmrl import AutoModelForCausalLMWithILQLHeads, CALMConfig, CALMTrainer
from lmrl.api import evaluate, train
from lmrl.evaluation import load_policy_model
from lmrl.models.adapters import HEADS_WEIGHTS, weights_fingerprint
from lmrl.models.calm import HEAD_WEIGHTS, BehaviorHeadWithOutcomeHead, OutcomeHead
from lmrl.models.tiny import build_tiny
from lmrl.tasks.flight_booking import generate_flight_episodes, outcome_label, relabel_row
from lmrl.trainers.calm import relabel_rows
from lmrl.trainers.feature_cache import FeatureCache

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "smollm2" / "flight_booking_cached_calm.yaml"


def flight_rows(n: int) -> list[dict]:
    """Flight-booking dialogues as the recipes' data has them: 4-flight tables, flight and status scored."""
    return [r.as_row() for r in generate_flight_episodes(n, seed=0, num_flights=4, progress=False,
                                                         success_rule="flight_status")]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return flight_rows(24)


@pytest.fixture(scope="module")
def base(rows, tmp_path_factory) -> Path:
    """A tiny GPT-2 and its tokenizer saved to disk: a heads-only checkpoint names its base by its path."""
    model, tokenizer = build_tiny(rows, hidden_size=32, num_layers=1, vocab_size=300)
    path = tmp_path_factory.mktemp("base") / "gpt2"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _args(tmp_path, name, **overrides):
    defaults = dict(output_dir=str(tmp_path / name), feature_cache=str(tmp_path / "cache"),
                    outcome_task="flight_booking", max_length=1024, per_device_train_batch_size=8, learning_rate=3e-3,
                    num_train_epochs=3, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                    seed=0)
    return CALMConfig(**{**defaults, **overrides})


def _trainer(base, args, rows, **kwargs):
    from transformers import AutoTokenizer

    set_seed(0)
    return CALMTrainer(model=str(base), args=args, train_dataset=rows, processing_class=AutoTokenizer.from_pretrained(base),
                       outcome_label=outcome_label, relabel=relabel_row, **kwargs)


def _heads(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("lm.pretrained_model.")}


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _pi_beta_by_hand(base_model, behavior_head, ids):
    """The base model's logits plus the behaviour head's correction W_E g(h) + b, computed outside lmrl's
    forward: what the saved checkpoint must decode with."""
    with torch.no_grad():
        out = base_model(ids, output_hidden_states=True)
        correction = behavior_head(out.hidden_states[-1], base_model.get_output_embeddings().weight)
    return out.logits + correction


def test_calm_on_the_cache_trains_only_its_heads_and_saves_heads_that_decode_as_base_plus_behaviour_head(
    rows, base, tmp_path
):
    trainer = _trainer(base, _args(tmp_path, "calm"), rows)
    model = trainer.model
    assert isinstance(model, BehaviorHeadWithOutcomeHead)

    # the cache holds the tokenized, relabelled rows
    relabelled = relabel_rows(rows, relabel_row)
    assert any(row.get("relabelled") for row in relabelled)
    cache = FeatureCache(tmp_path / "cache" / "train")
    assert len(cache) == len(trainer.train_dataset) == len(relabelled)
    for row in range(len(cache)):
        assert cache.input_ids(row).tolist() == trainer.train_dataset[row]["input_ids"], row
    assert cache.manifest["model"] == str(base)

    trainable = {name.split(".")[0] if name.startswith("outcome_head") else ".".join(name.split(".")[:2])
                 for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"lm.behavior_head", "outcome_head"}
    assert trainer.parameter_counts["trainable_parameters"] == sum(
        p.numel() for p in (*model.lm.behavior_head.parameters(), *model.outcome_head.parameters()))
    trunk = {k: v.clone() for k, v in model.lm.pretrained_model.state_dict().items()}
    before = _heads(model)
    trunk_calls = []
    model.lm.pretrained_model.register_forward_hook(lambda *_: trunk_calls.append(1))

    trainer.train()
    assert trunk_calls == []  # the trunk never ran: only its cached states were read
    for key, value in model.lm.pretrained_model.state_dict().items():
        assert torch.equal(value, trunk[key]), key
    after = _heads(model)
    for prefix in ("lm.behavior_head.mlp.", "lm.behavior_head.bias", "outcome_head."):
        assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith(prefix)), prefix
    for prefix in ("lm.q_heads.", "lm.v_head."):  # the carrier's heads that CALM does not use
        assert all(torch.equal(after[k], before[k]) for k in before if k.startswith(prefix)), prefix
    logs = [entry for entry in trainer.state.log_history if "loss/outcome" in entry]
    assert logs and logs[-1]["loss/lm"] < logs[0]["loss/lm"]

    trainer.save_model()
    out = tmp_path / "calm"
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted([HEADS_WEIGHTS, HEAD_WEIGHTS])
    config = json.loads((out / "config.json").read_text())
    assert config["base_model"] == str(base) and config["beta"] == 0.0 and config["behavior_adapter"] is True
    base_model = AutoModelForCausalLM.from_pretrained(base).eval()
    assert config["base_fingerprint"] == weights_fingerprint(base_model)
    assert not any(k.startswith("pretrained_model.") for k in load_file(out / HEADS_WEIGHTS))

    # `lmrl eval` (algorithm calm) loads it: the base from its path, the behaviour head on top
    loaded, tokenizer = load_policy_model(out, "calm")
    assert isinstance(loaded, AutoModelForCausalLMWithILQLHeads) and loaded.config.base_model == str(base)
    ids = torch.tensor([trainer.train_dataset[0]["input_ids"][:200]])
    expected = _pi_beta_by_hand(base_model, loaded.behavior_head, ids)
    with torch.no_grad():
        base_logits = base_model(ids).logits
        torch.testing.assert_close(loaded(ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert (expected - base_logits).abs().max() > 1e-2  # the behaviour head changes the decoding

    # what trained is what decodes: pi_beta's scores at the action states from the cache equal the loaded model's
    batch = trainer.data_collator([trainer.train_dataset[0]])
    steps = batch["action_mask"][:, 1:].bool()
    model.eval()
    with torch.no_grad():
        trained = model(batch["input_ids"], batch["attention_mask"], steps, batch["context_mask"],
                        batch["outcome_query"], trunk_hidden_states=batch["trunk_hidden_states"])
        decoded = loaded(batch["input_ids"]).logits[:, :-1][steps]
    torch.testing.assert_close(trained.policy_logits.materialize(), decoded, atol=1e-5, rtol=1e-5)

    # greedy decoding is the argmax of base logits + correction, token by token
    prompt = ids[:, :120]
    generated = loaded.generate(input_ids=prompt, max_new_tokens=6, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    by_hand = prompt
    for _ in range(6):
        next_token = _pi_beta_by_hand(base_model, loaded.behavior_head, by_hand)[:, -1].argmax(-1, keepdim=True)
        by_hand = torch.cat([by_hand, next_token], dim=-1)
    assert torch.equal(generated, by_hand)

    # the outcome head travels beside the heads, and the whole training module reloads
    head = OutcomeHead.load(out)
    for a, b in zip(head.parameters(), model.outcome_head.parameters()):
        assert torch.equal(a, b.detach())
    again = BehaviorHeadWithOutcomeHead.from_pretrained(out)
    for key, value in _heads(again).items():
        assert torch.equal(value, after[key]), key


def test_a_second_run_reuses_the_cache_and_builds_nothing(rows, base, tmp_path, monkeypatch):
    _trainer(base, _args(tmp_path, "first", max_steps=1), rows)
    built = _listing(tmp_path / "cache" / "train")
    shard_features, calls = feature_cache._shard_features, []

    def counted(*args, **kwargs):
        calls.append(1)
        return shard_features(*args, **kwargs)

    monkeypatch.setattr(feature_cache, "_shard_features", counted)
    trainer = _trainer(base, _args(tmp_path, "second", max_steps=1), rows)
    trainer.train()
    assert calls == [] and _listing(tmp_path / "cache" / "train") == built


def test_without_outcome_labels_the_lm_loss_trains_the_behaviour_head_alone(rows, base, tmp_path):
    from transformers import AutoTokenizer

    args = _args(tmp_path, "lm_only", outcome_task=None, relabel=False, max_steps=2)
    trainer = CALMTrainer(model=str(base), args=args, train_dataset=rows,
                          processing_class=AutoTokenizer.from_pretrained(base))
    assert trainer.model.outcome_head is None
    before = _heads(trainer.model)
    trainer.train()
    after = _heads(trainer.model)
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("lm.behavior_head."))
    assert not any("loss/outcome" in entry for entry in trainer.state.log_history)
    trainer.save_model()
    assert sorted(p.name for p in (tmp_path / "lm_only").glob("*.safetensors")) == [HEADS_WEIGHTS]
    assert load_policy_model(tmp_path / "lm_only", "calm")[0].behavior_head is not None


def test_the_outcome_loss_reaches_the_behaviour_heads_mlp_that_decodes(rows, base, tmp_path):
    trainer = _trainer(base, _args(tmp_path, "calm", max_steps=1), rows)
    model = trainer.model
    with torch.no_grad():  # the MLP's last layer starts at zero; move it so every layer's gradient shows
        model.lm.behavior_head.mlp[-1].weight.normal_(std=0.02)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    steps = batch["action_mask"][:, 1:].bool()
    out = model(batch["input_ids"], batch["attention_mask"], steps, batch["context_mask"], batch["outcome_query"],
                trunk_hidden_states=batch["trunk_hidden_states"])
    torch.nn.functional.cross_entropy(out.outcome_logits, batch["outcome"]).backward()
    for name, parameter in model.lm.behavior_head.mlp.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert model.lm.behavior_head.bias.grad is None  # the bias is pi_beta's only: the outcome head never reads it
    assert all(p.grad is None for p in model.lm.pretrained_model.parameters())


def test_a_cached_calm_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(rows, base, tmp_path):
    def run(name, resume=None):
        trainer = _trainer(base, _args(tmp_path, name, max_steps=4, save_strategy="steps", save_steps=2), rows)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run("straight")
    checkpoint = tmp_path / "straight" / "checkpoint-2"
    assert (checkpoint / HEADS_WEIGHTS).is_file() and (checkpoint / HEAD_WEIGHTS).is_file()
    assert not (checkpoint / "model.safetensors").exists()
    (tmp_path / "resumed").mkdir()
    shutil.copytree(checkpoint, tmp_path / "resumed" / "checkpoint-2")
    resumed = run("resumed", resume=True)
    assert resumed.state.global_step == 4
    expected = _heads(straight.model)
    for key, value in _heads(resumed.model).items():
        torch.testing.assert_close(value, expected[key], atol=1e-6, rtol=1e-6, msg=key)
    saved = load_file(checkpoint / HEADS_WEIGHTS)
    assert any(not torch.equal(expected["lm." + k], v) for k, v in saved.items() if k.startswith("behavior_head."))


def test_what_cannot_train_on_a_frozen_cached_trunk_is_refused_before_any_cache_is_built(rows, base, tmp_path):
    from peft import LoraConfig
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    args = _args(tmp_path, "run", max_steps=1)
    with pytest.raises(ValueError, match="feature_cache freezes the trunk.*PEFT adapter.*leave peft_config"):
        _trainer(base, args, rows, peft_config=LoraConfig(r=4, lora_alpha=8))
    in_memory, _ = build_tiny(rows, hidden_size=32, num_layers=1, vocab_size=300)
    with pytest.raises(ValueError, match="the model was built in memory.*Save the causal LM first and pass its path"):
        CALMTrainer(model=in_memory, args=args, train_dataset=rows, processing_class=tokenizer,
                    outcome_label=outcome_label, relabel=relabel_row)
    heads = AutoModelForCausalLMWithILQLHeads.from_pretrained(str(base))
    with pytest.raises(ValueError, match="CALM trains a fresh behaviour head on a plain causal LM.*Pass the base"):
        CALMTrainer(model=heads, args=args, train_dataset=rows, processing_class=tokenizer,
                    outcome_label=outcome_label, relabel=relabel_row)
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="CALMConfig: feature_cache_batch_tokens must be an integer >= 1, got 0"):
        _args(tmp_path, "run", feature_cache_batch_tokens=0)
    with pytest.raises(ValueError, match="CALMConfig: outcome_weight must be a finite number >= 0"):
        _args(tmp_path, "run", outcome_weight=-1.0)


def test_the_shipped_recipe_trains_heads_only_and_evaluates_with_a_tiny_model_in_smollm2s_place(
    rows, base, tmp_path
):
    data = tmp_path / "flight_booking.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    overrides = {"model_name_or_path": str(base), "dataset": str(data), "output_dir": str(tmp_path / "out"),
                 "feature_cache": str(tmp_path / "cache"), "max_steps": 2, "disable_tqdm": True}
    summary = train(RECIPE, overrides)
    assert summary["algorithm"] == "calm" and summary["trainable_fraction"] < 1.0
    assert FeatureCache(tmp_path / "cache" / "train").manifest["model"] == str(base)
    out = tmp_path / "out"
    assert (out / HEADS_WEIGHTS).is_file() and (out / HEAD_WEIGHTS).is_file()
    assert not (out / "model.safetensors").exists()
    report = evaluate(RECIPE, checkpoint=str(out), episodes=1, overrides=overrides)
    assert report["algorithm"] == "calm" and report["episodes"] == 1
    assert re.search(r"flight", report["task"])
