"""Bad models fail in words, naming the file or field and what to do: checkpoints whose config.json and
weights disagree, truncated weight files, model paths and hub ids that cannot be read, impossible tiny
models and training settings that cannot train."""

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest

from lmrl import AutoModelForCausalLMWithILQLHeads, ILQLConfig, ILQLTrainer
from lmrl.cli import main
from lmrl.evaluation import build_policy, load_policy_model
from lmrl.models.tiny import tiny_causal_lm
from lmrl.recipes import parse_recipe, read_recipe
from lmrl.trainers.chai import CHAIConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "doors_ilql.yaml"
ROW = {"messages": [{"role": "user", "content": "Pick a door:"}, {"role": "assistant", "content": " red"}]}
QUICK = ["--max_steps", "1", "--disable_tqdm", "true", "--report_to", "none"]


def _saved_ilql(tokenizer, folder: Path, **config_changes) -> Path:
    """A saved ILQL-heads model whose config.json is then edited (the weights stay as saved)."""
    AutoModelForCausalLMWithILQLHeads.from_pretrained(tiny_causal_lm(tokenizer, hidden_size=32)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _plain_recipe(tmp_path: Path, **fields) -> Path:
    """The doors recipe with a model path instead of its tiny model."""
    lines = [line for line in RECIPE.read_text().splitlines() if not line.startswith("tiny_model")]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("\n".join(lines).replace("examples/data", str(ROOT / "examples" / "data")) + "\n")
    return recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The doors recipe trained for one step, its checkpoint kept: `(output_dir, checkpoint-1)`."""
    out = tmp_path_factory.mktemp("bad_models") / "run"
    code = main(["train", str(RECIPE), *QUICK, "--output_dir", str(out), "--save_strategy", "steps",
                 "--save_steps", "1", "--dataset", str(ROOT / "examples" / "data" / "doors.jsonl")])
    assert code == 0
    return out, out / "checkpoint-1"


# -- a config.json at odds with the weights -------------------------------------------------------------


@pytest.mark.parametrize("field,value,held", [
    ("num_q_heads", 3, r"num_q_heads=2"),
    ("head_hidden_size", 16, r"head_hidden_size=64"),
    ("head_type", "untied", r"head_type='tied'"),
    ("target_heads", False, r"target_heads=True"),
])
def test_a_checkpoint_whose_config_describes_other_heads_than_its_weights_is_refused(tokenizer, tmp_path, field,
                                                                                     value, held):
    folder = _saved_ilql(tokenizer, tmp_path / "ckpt", **{field: value})
    expected = rf"ckpt: the weights do not match the config: .*config.json says {field}={value!r}, but the " \
               rf"weights hold {held}"
    with pytest.raises(ValueError, match=expected):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(folder)
    with pytest.raises(ValueError, match=expected):
        load_policy_model(folder, "ilql")


def test_the_error_for_a_missing_q_head_names_its_weights(tokenizer, tmp_path):
    folder = _saved_ilql(tokenizer, tmp_path / "ckpt", num_q_heads=3)
    with pytest.raises(ValueError, match=r"missing q_heads\.2\.bias, q_heads\.2\.mlp\.0\.bias"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(folder)


def test_a_checkpoint_whose_weights_lack_one_head_tensor_is_refused_even_when_its_config_is_right(tokenizer,
                                                                                                 tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _saved_ilql(tokenizer, tmp_path / "ckpt")
    weights = load_file(folder / "model.safetensors")
    del weights["v_head.mlp.2.bias"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing v_head\.mlp\.2\.bias.*does not describe the saved heads"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(folder)


def test_an_ilql_config_beside_weights_without_heads_is_refused(tokenizer, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _saved_ilql(tokenizer, tmp_path / "ckpt")
    trunk = {k: v for k, v in load_file(folder / "model.safetensors").items() if k.startswith("pretrained_model.")}
    save_file(trunk, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"The weights hold no heads at all.*write the causal LM's own config"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(folder)


def test_a_plain_causal_lm_still_gets_fresh_heads(tokenizer, tmp_path):
    tiny_causal_lm(tokenizer, hidden_size=32).save_pretrained(tmp_path)
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(tmp_path)
    assert model.heads_are_fresh and len(model.q_heads) == 2


# -- truncated weights ------------------------------------------------------------------------------------


def test_a_truncated_model_file_is_named_by_every_loader(trained, tokenizer, tmp_path, capsys):
    out, _ = trained
    broken = tmp_path / "broken"
    shutil.copytree(out, broken, ignore=shutil.ignore_patterns("checkpoint-*"))
    _truncate(broken / "model.safetensors")
    message = rf"{broken / 'model.safetensors'} is truncated or not a safetensors file \(.*\); re-save or re-download"
    with pytest.raises(ValueError, match=message):
        AutoModelForCausalLMWithILQLHeads.from_pretrained(broken)
    for algorithm in ("ilql", "bc"):
        with pytest.raises(ValueError, match=message):
            load_policy_model(broken, algorithm)
    with pytest.raises(ValueError, match=message):
        ILQLTrainer(model=str(broken), args=ILQLConfig(output_dir=str(tmp_path / "out"), report_to="none",
                                                      max_steps=1), train_dataset=[ROW], processing_class=tokenizer)
    recipe = _plain_recipe(tmp_path, model_name_or_path=str(broken))
    assert main(["train", str(recipe), *QUICK, "--output_dir", str(tmp_path / "out")]) == 2
    assert "model.safetensors is truncated or not a safetensors file" in capsys.readouterr().err


def test_resuming_from_a_checkpoint_with_truncated_weights_is_refused_naming_the_file(trained, tmp_path, capsys):
    out, checkpoint = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    _truncate(run / checkpoint.name / "model.safetensors")
    code = main(["train", str(RECIPE), *QUICK, "--output_dir", str(run), "--save_strategy", "steps",
                 "--dataset", str(ROOT / "examples" / "data" / "doors.jsonl"),
                 "--resume_from_checkpoint", str(run / checkpoint.name)])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint-1/model.safetensors is truncated or not a safetensors file" in err


# -- model paths and hub ids that cannot be read ------------------------------------------------------


def test_a_model_path_that_does_not_exist_is_named_with_the_folder_it_is_relative_to(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = _plain_recipe(tmp_path, model_name_or_path="./nope")
    assert main(["train", str(recipe), *QUICK, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"model_name_or_path: ./nope does not exist (relative to {tmp_path})" in err
    assert "lmrl fetch-model smollm2" in err


def test_a_hub_id_the_offline_hub_does_not_hold_is_an_error_that_says_how_to_get_the_model(tmp_path, capsys,
                                                                                            monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    recipe = _plain_recipe(tmp_path, model_name_or_path="someone/some-model")
    assert main(["train", str(recipe), *QUICK, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "model_name_or_path: someone/some-model is not a local folder" in err
    assert "the hub is offline (HF_HUB_OFFLINE=1) with no copy of it in the cache" in err
    assert "lmrl fetch-model smollm2" in err
    with pytest.raises(ValueError, match=r"from_pretrained\(someone/some-model\): someone/some-model is not a local "
                                         r"folder .* the hub is offline"):
        AutoModelForCausalLMWithILQLHeads.from_pretrained("someone/some-model")


def test_a_tokenizer_path_that_does_not_exist_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["train", str(RECIPE), *QUICK, "--output_dir", str(tmp_path / "out"),
                 "--tokenizer_name_or_path", "./nope"]) == 2
    assert "tokenizer_name_or_path: ./nope does not exist" in capsys.readouterr().err


def test_a_trainer_given_a_missing_model_path_names_it(tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"model \(ILQLTrainer\): \./nope does not exist"):
        ILQLTrainer(model="./nope", args=ILQLConfig(output_dir=str(tmp_path / "out"), report_to="none"),
                    train_dataset=[ROW], processing_class=tokenizer)


@pytest.mark.parametrize("field", ["steer_model", "proposal_model"])
def test_a_steering_or_proposal_model_that_does_not_exist_is_named(trained, field, monkeypatch):
    out, _ = trained
    monkeypatch.chdir(ROOT)
    script, config = parse_recipe(read_recipe(RECIPE, [f"--{field}", "./nope"]))
    with pytest.raises(ValueError, match=rf"{field}: \./nope does not exist \(relative to {ROOT}\)"):
        build_policy(script, config, out)


# -- impossible tiny models -----------------------------------------------------------------------------


@pytest.mark.parametrize("tiny_model,message", [
    ({"hidden_size": -32}, "tiny_model.hidden_size must be an integer >= 1, got -32"),
    ({"hidden_size": 0}, "tiny_model.hidden_size must be an integer >= 1, got 0"),
    ({"num_layers": -1}, "tiny_model.num_layers must be an integer >= 1, got -1"),
    ({"num_layers": 0}, "tiny_model.num_layers must be an integer >= 1, got 0"),
    ({"hidden_size": 65}, "tiny_model.hidden_size=65 must be a multiple of its 2 attention heads"),
    ({"architecture": "llama", "hidden_size": 66}, "tiny_model.hidden_size=66 gives llama attention heads of odd"),
    ({"hidden_size": 64, "n_head": 3}, "tiny_model.hidden_size=64 must be a multiple of tiny_model.n_head=3"),
    ({"architecture": "llama", "intermediate_size": -1}, "tiny_model: no llama causal LM can be built"),
    ({"architecture": "nope"}, "tiny_model.architecture: 'nope' is not a transformers model type"),
    ({"vocab_size": 10}, "tiny_model.vocab_size must be an integer >= 257"),
])
def test_an_impossible_tiny_model_is_refused_naming_its_field(tmp_path, capsys, monkeypatch, tiny_model, message):
    monkeypatch.chdir(ROOT)
    assert main(["train", str(RECIPE), *QUICK, "--output_dir", str(tmp_path / "out"),
                 "--tiny_model", json.dumps(tiny_model)]) == 2
    assert message in capsys.readouterr().err


# -- training settings that cannot train -----------------------------------------------------------------


@pytest.mark.parametrize("override,message", [
    (["--per_device_train_batch_size", "0"], "ILQLConfig: per_device_train_batch_size must be an integer >= 1, got 0"),
    (["--max_length", "0"], "ILQLConfig: max_length must be an integer >= 2 (a state and an action) or None"),
])
def test_a_setting_that_cannot_train_is_refused_by_the_cli_naming_the_field(tmp_path, capsys, monkeypatch, override,
                                                                            message):
    monkeypatch.chdir(ROOT)
    assert main(["train", str(RECIPE), *QUICK, "--output_dir", str(tmp_path / "out"), *override]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("field,value,message", [
    ("max_length", 1, r"max_length must be an integer >= 2 .*got 1"),
    ("per_device_eval_batch_size", 0, r"per_device_eval_batch_size must be an integer >= 1, got 0"),
    ("gradient_accumulation_steps", 0, r"gradient_accumulation_steps must be an integer >= 1, got 0"),
    ("learning_rate", float("nan"), r"learning_rate must be a finite number >= 0, got nan"),
    ("learning_rate", -1e-4, r"learning_rate must be a finite number >= 0, got -0.0001"),
    ("num_train_epochs", 0, r"num_train_epochs must be a finite number > 0 \(or set max_steps\), got 0"),
])
def test_the_training_config_refuses_a_setting_that_cannot_train(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=rf"ILQLConfig: {message}"):
        ILQLConfig(output_dir=str(tmp_path), report_to="none", **{field: value})


def test_the_shortest_episodes_and_a_step_budget_without_epochs_are_accepted(tmp_path):
    config = ILQLConfig(output_dir=str(tmp_path), report_to="none", max_length=2, num_train_epochs=0, max_steps=3)
    assert config.max_length == 2 and config.max_steps == 3
    assert ILQLConfig(output_dir=str(tmp_path), report_to="none", max_length=None).max_length is None


@pytest.mark.parametrize("gamma", [1.5, -0.1, float("nan")])
def test_chai_refuses_a_discount_outside_zero_to_one(tmp_path, gamma):
    with pytest.raises(ValueError, match=r"CHAIConfig: gamma must be in \[0, 1\] \(the discount per agent turn\)"):
        CHAIConfig(output_dir=str(tmp_path), report_to="none", gamma=gamma)
