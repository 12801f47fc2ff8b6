"""Heads on a frozen trunk: the feature cache (the trunk's last hidden states, computed once), the
trainers that read it, heads-only checkpoints that name and fingerprint their base, and the behaviour
head (docs/design.md, section 5: Trainers; docs/guides/feature-cache.md)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_peft import _assert_same_generation, _guided
from test_trainers import PROMPT, _args, _reply, bandit_rows
from transformers import AutoModelForCausalLM, pipeline, set_seed

import lmrl.trainers.feature_cache as feature_cache
from lmrl import (
    AutoModelForCausalLMWithILQLHeads,
    ILQLConfig,
    ILQLTrainer,
    MCConfig,
    MCTrainer,
    encode_prompt,
)
from lmrl.cli import main
from lmrl.data import prepare_dataset
from lmrl.models.adapters import HEADS_WEIGHTS, weights_fingerprint
from lmrl.models.tiny import tiny_causal_lm
from lmrl.trainers.checkpointing import tokenizer_fingerprint
from lmrl.trainers.feature_cache import MANIFEST, FeatureCache, build_feature_cache, token_ids_fingerprint

ROOT = Path(__file__).resolve().parents[1]
DOORS = ROOT / "examples" / "data" / "doors.jsonl"
HIDDEN = 64  # tiny_causal_lm's width


def door_rows(n: int, skip: int = 0) -> list[dict]:
    """Rows of the shipped doors data: three prompts, one-word replies, so rows differ in length."""
    return [json.loads(line) for line in DOORS.read_text().splitlines()[skip:skip + n]]


def _save_base(tokenizer, path: Path, seed: int) -> Path:
    set_seed(seed)
    tiny_causal_lm(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base(tokenizer, tmp_path_factory) -> Path:
    """A tiny GPT-2 saved to disk: heads-only checkpoints name their base by its path."""
    return _save_base(tokenizer, tmp_path_factory.mktemp("base") / "gpt2", seed=0)


@pytest.fixture(scope="module")
def other_base(tokenizer, tmp_path_factory) -> Path:
    """The same shape as `base`, other weights."""
    return _save_base(tokenizer, tmp_path_factory.mktemp("other") / "gpt2", seed=1)


def _tokenized(tokenizer, rows, max_length=None):
    return prepare_dataset(rows, tokenizer, max_length)


def _build(model, tokenizer, data, folder, **kwargs):
    return build_feature_cache(model, tokenizer, data, folder, "tiny-gpt2", progress=False,
                               **{"shard_rows": 16, **kwargs})


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- the cache itself
def test_the_cache_holds_each_rows_last_hidden_states_at_about_4h_bytes_a_token(tokenizer, base, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(base)
    model.train()  # the build runs in eval mode and gives the model back as it was
    data = _tokenized(tokenizer, door_rows(40))
    lengths = [len(ids) for ids in data["input_ids"]]
    assert len(set(lengths)) > 1  # rows of several lengths: batches are padded
    folder = tmp_path / "cache"
    cache = _build(model, tokenizer, data, folder, batch_tokens=64)
    assert model.training

    assert sorted(p.name for p in folder.iterdir()) == [
        MANIFEST, "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["complete"] is True
    assert (manifest["rows"], manifest["shards"], manifest["shard_rows"]) == (40, 3, 16)
    assert (manifest["hidden_size"], manifest["dtype"], manifest["model"]) == (HIDDEN, "float32", "tiny-gpt2")
    assert manifest["model_fingerprint"] == weights_fingerprint(model)
    assert manifest["tokenizer_fingerprint"] == tokenizer_fingerprint(tokenizer)
    assert manifest["data_fingerprint"] == token_ids_fingerprint(data)

    assert len(cache) == 40 and cache.manifest == manifest
    model.eval()
    with torch.no_grad():
        for row in range(40):
            ids = data[row]["input_ids"]
            expected = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
            hidden = cache.hidden(row)
            assert hidden.shape == (len(ids), HIDDEN) and hidden.dtype == torch.float32
            torch.testing.assert_close(hidden, expected, atol=1e-6, rtol=0, msg=f"row {row}")
            assert cache.input_ids(row).tolist() == ids
    with pytest.raises(IndexError, match="row 40 is outside the cache's 40 rows"):
        cache.hidden(40)

    # float32 hidden states (4h bytes a token), the int32 token id (4), the int64 offsets (8 a row), and
    # each shard's header
    tokens = sum(lengths)
    assert cache.nbytes() == sum(p.stat().st_size for p in folder.glob("shard-*.safetensors"))
    assert tokens * HIDDEN * 4 < cache.nbytes() <= tokens * (HIDDEN * 4 + 16) + 3 * 1024
    print(f"feature cache: {tokens} tokens, {cache.nbytes()} bytes, {cache.nbytes() / tokens:.1f} bytes a token "
          f"(h = {HIDDEN})")


def test_a_stopped_build_resumes_at_the_first_missing_shard_and_ends_as_an_uninterrupted_one(
    tokenizer, base, tmp_path, monkeypatch
):
    model = AutoModelForCausalLM.from_pretrained(base)
    data = _tokenized(tokenizer, door_rows(40))
    shard_features = feature_cache._shard_features
    calls = []

    def stopped_at_the_second_shard(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return shard_features(*args, **kwargs)

    folder = tmp_path / "cache"
    monkeypatch.setattr(feature_cache, "_shard_features", stopped_at_the_second_shard)
    with pytest.raises(RuntimeError, match="killed"):
        _build(model, tokenizer, data, folder)
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "shard-00000.safetensors"]
    assert json.loads((folder / MANIFEST).read_text())["complete"] is False
    with pytest.raises(ValueError, match="the feature cache is incomplete .*run the same build again"):
        FeatureCache(folder)
    first_shard = (folder / "shard-00000.safetensors").read_bytes()

    def counted(*args, **kwargs):
        calls.append(len(args[1]))
        return shard_features(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(feature_cache, "_shard_features", counted)
    resumed = _build(model, tokenizer, data, folder)
    assert calls == [16, 8]  # shards 1 and 2 only
    assert (folder / "shard-00000.safetensors").read_bytes() == first_shard

    calls.clear()
    _build(model, tokenizer, data, folder)  # complete: nothing runs again
    assert calls == []

    monkeypatch.setattr(feature_cache, "_shard_features", shard_features)
    reference = _build(model, tokenizer, data, tmp_path / "straight")
    assert resumed.manifest == reference.manifest
    for shard in range(3):
        name = f"shard-{shard:05d}.safetensors"
        got, expected = load_file(folder / name), load_file(tmp_path / "straight" / name)
        assert got.keys() == expected.keys()
        for key in expected:
            assert torch.equal(got[key], expected[key]), (name, key)


def test_a_stopped_build_resumed_with_another_shard_size_is_refused_or_complete(tokenizer, base, tmp_path, monkeypatch):
    model = AutoModelForCausalLM.from_pretrained(base)
    data = _tokenized(tokenizer, door_rows(40))
    shard_features, calls = feature_cache._shard_features, []

    def stopped_at_the_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return shard_features(*args, **kwargs)

    monkeypatch.setattr(feature_cache, "_shard_features", stopped_at_the_second_shard)
    with pytest.raises(RuntimeError, match="killed"):
        _build(model, tokenizer, data, tmp_path / "cache", shard_rows=16)
    monkeypatch.setattr(feature_cache, "_shard_features", shard_features)
    try:
        cache = _build(model, tokenizer, data, tmp_path / "cache", shard_rows=32)
    except ValueError as err:
        assert "shard_rows" in str(err)
        return
    reference = _build(model, tokenizer, data, tmp_path / "straight")
    for row in range(40):
        assert torch.equal(cache.hidden(row), reference.hidden(row)), row


@pytest.mark.parametrize("change, named", [
    ("model", "another model: its model fingerprint"),
    ("tokenizer", "another tokenizer: its tokenizer fingerprint"),
    ("data", "another token ids .the data, max_length or truncation differ.: its data fingerprint"),
    ("max_length", "another token ids .the data, max_length or truncation differ.: its data fingerprint"),
])
def test_a_cache_of_another_model_tokenizer_or_data_is_refused_naming_which(
    tokenizer, chat_tokenizer, base, other_base, tmp_path, change, named
):
    model = AutoModelForCausalLM.from_pretrained(base)
    data = _tokenized(tokenizer, door_rows(24))
    folder = tmp_path / "cache"
    _build(model, tokenizer, data, folder)
    before = _listing(folder)
    other = {"model": (AutoModelForCausalLM.from_pretrained(other_base), tokenizer, data),
             "tokenizer": (model, chat_tokenizer, data),
             "data": (model, tokenizer, _tokenized(tokenizer, door_rows(24, skip=1))),
             "max_length": (model, tokenizer, _tokenized(tokenizer, door_rows(24), max_length=6))}[change]
    with pytest.raises(ValueError, match=f"{re.escape(str(folder))}: this feature cache was built from {named}"):
        _build(*other, folder)
    assert _listing(folder) == before  # nothing written over

    key, value = {"model": ("model_fingerprint", weights_fingerprint(other[0])),
                  "tokenizer": ("tokenizer_fingerprint", tokenizer_fingerprint(other[1])),
                  "data": ("data_fingerprint", token_ids_fingerprint(other[2])),
                  "max_length": ("data_fingerprint", token_ids_fingerprint(other[2]))}[change]
    with pytest.raises(ValueError, match=f"{named} .*, this run's is {value}"):
        FeatureCache(folder).check(**{key: value})


def test_a_folder_that_holds_other_files_and_no_manifest_is_refused_and_left_untouched(tokenizer, base, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    model = AutoModelForCausalLM.from_pretrained(base)
    with pytest.raises(ValueError, match=f"{re.escape(str(folder))} holds other files and no {MANIFEST}.*nothing is written over"):
        _build(model, tokenizer, _tokenized(tokenizer, door_rows(8)), folder)
    assert _listing(folder) == {"notes.txt": b"my notes"}
    with pytest.raises(ValueError, match=f"{re.escape(str(folder))} is not a feature cache .it has no {MANIFEST}.*cache-features"):
        FeatureCache(folder)


def test_a_trainer_refuses_a_cache_built_from_another_base(tokenizer, base, other_base, tmp_path):
    args = _args(ILQLConfig, tmp_path, "run", feature_cache=str(tmp_path / "cache"), bc_weight=0.0, max_steps=1)
    ILQLTrainer(model=str(base), args=args, train_dataset=bandit_rows(16), processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"cache.train: this feature cache was built from another model"):
        ILQLTrainer(model=str(other_base), args=args, train_dataset=bandit_rows(16), processing_class=tokenizer)


def test_a_model_built_in_memory_is_refused_as_its_heads_could_not_name_their_base(tokenizer, tmp_path):
    args = _args(ILQLConfig, tmp_path, "run", feature_cache=str(tmp_path / "cache"), bc_weight=0.0, max_steps=1)
    with pytest.raises(ValueError, match="the model was built in memory.*Save the causal LM first and pass its path"):
        ILQLTrainer(model=tiny_causal_lm(tokenizer), args=args, train_dataset=bandit_rows(8), processing_class=tokenizer)
    assert not (tmp_path / "cache").exists()


def test_a_peft_adapter_on_a_frozen_cached_trunk_is_refused_before_any_cache_is_built(tokenizer, base, tmp_path):
    from peft import LoraConfig

    args = _args(ILQLConfig, tmp_path, "run", feature_cache=str(tmp_path / "cache"), bc_weight=0.0, max_steps=1)
    with pytest.raises(ValueError) as refused:
        ILQLTrainer(model=str(base), args=args, train_dataset=bandit_rows(8), processing_class=tokenizer,
                    peft_config=LoraConfig(r=4, lora_alpha=8))
    message = str(refused.value).replace(str(tmp_path), "TMP")  # the folder's name holds "peft_adapter"
    assert "another model" not in message and re.search("(?i)peft|lora|adapter", message), message
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- training on the cache
def _heads(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("pretrained_model.")}


def test_ilql_on_the_cache_trains_the_heads_only_and_saves_them_naming_their_base(
    tokenizer, base, other_base, tmp_path
):
    cache = tmp_path / "cache"
    args = _args(ILQLConfig, tmp_path, "ilql", feature_cache=str(cache), bc_weight=0.0, alpha=0.5, beta=8.0,
                 num_train_epochs=3, per_device_train_batch_size=8)
    set_seed(0)
    trainer = ILQLTrainer(model=str(base), args=args, train_dataset=door_rows(48), processing_class=tokenizer)
    model = trainer.model
    assert FeatureCache(cache / "train").rows == 48
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in trainable} == {"q_heads", "v_head"}
    heads = sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert trainer.parameter_counts["trainable_parameters"] == heads
    assert trainer.parameter_counts["trainable_fraction"] < 0.25
    trunk = {k: v.clone() for k, v in model.pretrained_model.state_dict().items()}
    before = _heads(model)

    trainer.train()
    for key, value in model.pretrained_model.state_dict().items():
        assert torch.equal(value, trunk[key]), key
    after = _heads(model)
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("q_heads."))
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("target_q_heads."))

    # the heads see the same inputs from the cache as from the trunk
    model.eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(0, 48, 4)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "action_mask")}
    mask = batch["attention_mask"].bool()
    assert not mask.all()  # padded rows
    with torch.no_grad():
        cached = model(**inputs, trunk_hidden_states=batch["trunk_hidden_states"])
        online = model(**inputs)
    torch.testing.assert_close(cached.hidden_states[mask], online.hidden_states[mask], atol=1e-6, rtol=0)
    torch.testing.assert_close(cached.v_values[mask], online.v_values[mask], atol=1e-6, rtol=0)
    for name in ("q_values", "target_q_values"):
        torch.testing.assert_close(getattr(cached, name)[:, mask[:, 1:]], getattr(online, name)[:, mask[:, 1:]],
                                   atol=1e-6, rtol=0, msg=name)
    torch.testing.assert_close(cached.policy_logits.materialize(), online.policy_logits.materialize(), atol=1e-5,
                               rtol=0)

    trainer.save_model()
    out = tmp_path / "ilql"
    assert (out / HEADS_WEIGHTS).is_file() and not (out / "model.safetensors").exists()
    assert [p.name for p in out.glob("*.safetensors")] == [HEADS_WEIGHTS]
    config = json.loads((out / "config.json").read_text())
    assert config["base_model"] == str(base)
    assert config["base_fingerprint"] == weights_fingerprint(AutoModelForCausalLM.from_pretrained(base))
    assert (out / HEADS_WEIGHTS).stat().st_size < (base / "model.safetensors").stat().st_size / 2
    assert not any(k.startswith("pretrained_model.") for k in load_file(out / HEADS_WEIGHTS))

    trained = _guided(model, tokenizer)
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(out)
    assert loaded.config.base_model == str(base) and not any(p.requires_grad for p in loaded.pretrained_model.parameters())
    _assert_same_generation(_guided(loaded, tokenizer), trained)
    auto = AutoModelForCausalLM.from_pretrained(out)  # as pipeline(model=PATH) loads it
    assert isinstance(auto, AutoModelForCausalLMWithILQLHeads)
    _assert_same_generation(_guided(auto, tokenizer), trained)

    # the base moved: base_model= names it (a path or a model object), and its weights are checked
    moved = tmp_path / "moved-base"
    shutil.copytree(base, moved)
    _assert_same_generation(_guided(AutoModelForCausalLMWithILQLHeads.from_pretrained(out, base_model=moved),
                                    tokenizer), trained)
    in_memory = AutoModelForCausalLM.from_pretrained(moved)
    _assert_same_generation(_guided(AutoModelForCausalLMWithILQLHeads.from_pretrained(out, base_model=in_memory),
                                    tokenizer), trained)
    for other in (other_base, AutoModelForCausalLM.from_pretrained(other_base)):
        with pytest.raises(ValueError, match=f"its heads were trained on {re.escape(str(base))} .weights fingerprint "
                                             f"{config['base_fingerprint']}.*other weights .fingerprint"):
            AutoModelForCausalLMWithILQLHeads.from_pretrained(out, base_model=other)
    config["base_model"] = str(tmp_path / "gone")
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="which could not be loaded.*base_model="):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(out)


def test_a_heads_only_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tokenizer, base, tmp_path):
    def run(name, resume=None):
        args = _args(ILQLConfig, tmp_path, name, feature_cache=str(tmp_path / "cache"), bc_weight=0.0, alpha=0.5,
                     max_steps=6, save_strategy="steps", save_steps=3, per_device_train_batch_size=8)
        set_seed(0)
        trainer = ILQLTrainer(model=str(base), args=args, train_dataset=door_rows(32), processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run("straight")
    checkpoint = tmp_path / "straight" / "checkpoint-3"
    assert (checkpoint / HEADS_WEIGHTS).is_file() and not (checkpoint / "model.safetensors").exists()
    # a run stopped after its first checkpoint, resumed from it
    (tmp_path / "resumed").mkdir()
    shutil.copytree(checkpoint, tmp_path / "resumed" / "checkpoint-3")
    resumed = run("resumed", resume=True)
    assert resumed.state.global_step == 6
    expected = _heads(straight.model)
    for key, value in _heads(resumed.model).items():
        torch.testing.assert_close(value, expected[key], atol=1e-6, rtol=1e-6, msg=key)
    assert any(not torch.equal(v, load_file(checkpoint / HEADS_WEIGHTS)[k]) for k, v in expected.items())


def test_monte_carlo_regression_on_the_cache_ranks_the_rewarded_reply_first_and_evaluates_on_its_own_cache(
    tokenizer, base, tmp_path
):
    cache = tmp_path / "cache"
    args = _args(MCConfig, tmp_path, "mc", feature_cache=str(cache), bc_weight=0.0, num_train_epochs=4)
    set_seed(0)
    trainer = MCTrainer(model=str(base), args=args, train_dataset=bandit_rows(140), eval_dataset=bandit_rows(14),
                        processing_class=tokenizer)
    model = trainer.model
    assert model.target_q_heads is None
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"q_heads", "v_head"}
    trunk = {k: v.clone() for k, v in model.pretrained_model.state_dict().items()}
    trainer.train()
    metrics = trainer.evaluate()
    assert torch.isfinite(torch.tensor(metrics["eval_loss"]))
    assert (FeatureCache(cache / "train").rows, FeatureCache(cache / "eval").rows) == (140, 14)
    for key, value in model.pretrained_model.state_dict().items():
        assert torch.equal(value, trunk[key]), key

    model.eval()
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    with torch.no_grad():
        hidden = model.pretrained_model(ids, output_hidden_states=True).hidden_states[-1][:, -1]
        red, blue = (tokenizer.convert_tokens_to_ids(t) for t in ("Ġred", "Ġblue"))
        q = model.min_q(hidden, torch.tensor([[red, blue]]))[0]
    assert q[1] > q[0] + 0.3
    trainer.save_model()
    saved = load_file(tmp_path / "mc" / HEADS_WEIGHTS)
    assert "q_heads.0.bias" in saved and not any(k.startswith("target_q_heads.") for k in saved)
    assert not (tmp_path / "mc" / "model.safetensors").exists()


def _p_red(model, tokenizer) -> float:
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    return logits.softmax(-1)[tokenizer.convert_tokens_to_ids("Ġred")].item()


def test_a_behaviour_head_makes_pi_beta_the_datas_policy_on_a_frozen_trunk(tokenizer, base, tmp_path):
    """The data answers ' red' 6 times in 7 and ' blue' (rewarded) once; the random base model answers
    neither. With the behaviour head, beta 0 decodes the data's majority and beta 8 the rewarded reply."""
    original = AutoModelForCausalLM.from_pretrained(base).eval()
    base_reply = _reply(original, tokenizer)
    assert base_reply not in (" red", " blue") and _p_red(original, tokenizer) < 0.05

    args = _args(ILQLConfig, tmp_path, "adapter", feature_cache=str(tmp_path / "cache"), behavior_adapter=True,
                 bc_weight=1.0, alpha=0.5, beta=8.0, num_train_epochs=8, learning_rate=3e-3)
    set_seed(0)
    trainer = ILQLTrainer(model=str(base), args=args, train_dataset=bandit_rows(70), processing_class=tokenizer)
    model = trainer.model
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"q_heads", "v_head", "behavior_head"}
    trainer.train()
    model.eval()
    assert _reply(model, tokenizer) == " blue"
    assert _reply(model.pretrained_model, tokenizer) == base_reply  # the trunk is as it was
    model.config.beta = 0.0  # pi_beta alone: the base's logits plus the behaviour head's
    assert _reply(model, tokenizer) == " red"
    assert _p_red(model, tokenizer) > 0.5
    model.config.beta = 8.0

    trainer.save_model()
    assert any(k.startswith("behavior_head.") for k in load_file(tmp_path / "adapter" / HEADS_WEIGHTS))
    generator = pipeline("text-generation", model=str(tmp_path / "adapter"))
    reply = generator(PROMPT, max_new_tokens=3, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert reply == " blue"
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path / "adapter", beta=0.0)
    assert loaded.config.behavior_adapter and _reply(loaded, tokenizer) == " red"


def test_without_a_behaviour_head_beta_0_decodes_exactly_as_the_base_model(tokenizer, base, tmp_path):
    args = _args(ILQLConfig, tmp_path, "plain", feature_cache=str(tmp_path / "cache"), bc_weight=0.0, beta=0.0,
                 max_steps=3)
    trainer = ILQLTrainer(model=str(base), args=args, train_dataset=bandit_rows(48), processing_class=tokenizer)
    trainer.train()
    model = trainer.model.eval()
    assert model.behavior_head is None
    original = AutoModelForCausalLM.from_pretrained(base).eval()
    ids = torch.tensor([encode_prompt(tokenizer, PROMPT)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, original(ids).logits)
    assert _reply(model, tokenizer) == _reply(original, tokenizer)


@pytest.mark.parametrize("config_class", [ILQLConfig, MCConfig])
def test_bc_on_a_frozen_trunk_without_a_behaviour_head_is_refused(config_class, tmp_path):
    with pytest.raises(ValueError, match=r"feature_cache freezes the trunk, so the BC term \(bc_weight 1.0\) would "
                                         "train nothing.*bc_weight: 0.*behavior_adapter: true"):
        config_class(output_dir=str(tmp_path), feature_cache=str(tmp_path / "cache"), bc_weight=1.0)
    config_class(output_dir=str(tmp_path), feature_cache=str(tmp_path / "cache"), bc_weight=0.0)
    config_class(output_dir=str(tmp_path), feature_cache=str(tmp_path / "cache"), behavior_adapter=True)


# ---------------------------------------------------------------- the command line
def test_cache_features_command_builds_the_recipes_cache_and_reuses_it(base, tmp_path, capsys):
    data = tmp_path / "doors.jsonl"
    data.write_text("".join(DOORS.read_text().splitlines(True)[:30]))
    recipe = tmp_path / "cached.yaml"
    recipe.write_text(f"algorithm: ilql\ndataset: {data}\nmodel_name_or_path: {base}\noutput_dir: {tmp_path / 'out'}\n"
                      f"feature_cache: {tmp_path / 'cache'}\nbc_weight: 0.0\nmax_steps: 2\nsave_strategy: 'no'\n"
                      "report_to: none\ndisable_tqdm: true\n")
    assert main(["cache-features", str(recipe)]) == 0
    summary = json.loads(capsys.readouterr().out)
    cache = FeatureCache(tmp_path / "cache" / "train")
    assert summary["feature_cache"] == str(tmp_path / "cache") and "eval" not in summary
    assert summary["train"] == {"rows": 30, "bytes": cache.nbytes(), "model": str(base), "hidden_size": HIDDEN,
                                "dtype": "float32"}
    built = _listing(tmp_path / "cache" / "train")

    assert main(["cache-features", str(recipe)]) == 0  # already built: checked and reused
    assert json.loads(capsys.readouterr().out)["train"] == summary["train"]
    assert _listing(tmp_path / "cache" / "train") == built
    assert main(["train", str(recipe)]) == 0  # trains on it
    assert json.loads((tmp_path / "out" / "train_summary.json").read_text())["trainable_fraction"] < 0.25
    capsys.readouterr()
    assert _listing(tmp_path / "cache" / "train") == built
    assert (tmp_path / "out" / HEADS_WEIGHTS).is_file() and not (tmp_path / "out" / "model.safetensors").exists()

    plain = tmp_path / "plain.yaml"
    plain.write_text("\n".join(line for line in recipe.read_text().splitlines() if not line.startswith("feature_cache")))
    assert main(["cache-features", str(plain)]) == 2
    assert f"{plain}: no feature_cache folder is set" in capsys.readouterr().err


def test_load_best_model_at_end_loads_the_best_heads_only_checkpoint(tokenizer, base, tmp_path):
    """transformers finds no full weights in a heads-only checkpoint (it would warn and keep the last
    model); the trainer loads the best checkpoint's heads as a resume does."""
    args = _args(MCConfig, tmp_path, "mc", feature_cache=str(tmp_path / "cache"), bc_weight=0.0, max_steps=6,
                 eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                 load_best_model_at_end=True, metric_for_best_model="eval_loss",
                 greater_is_better=True)  # the worst loss: an early checkpoint, not the last
    set_seed(0)
    trainer = MCTrainer(model=str(base), args=args, train_dataset=bandit_rows(64), eval_dataset=bandit_rows(8),
                        processing_class=tokenizer)
    trainer.train()
    best = Path(trainer.state.best_model_checkpoint)
    assert best.name != "checkpoint-6" and (best / HEADS_WEIGHTS).is_file()
    saved, last = load_file(best / HEADS_WEIGHTS), load_file(tmp_path / "mc" / "checkpoint-6" / HEADS_WEIGHTS)
    heads = _heads(trainer.model)
    for key, value in saved.items():
        torch.testing.assert_close(heads[key], value, msg=key)
    assert any(not torch.equal(saved[k], last[k]) for k in saved)
