"""Bad inputs fail in words (docs/guides/reliability.md): files, long rows, tokenizers, pre-tokenized data,
recipes, and model folders that hold pickles or code."""

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmrl import ILQLConfig, ILQLTrainer
from lmrl.cli import main
from lmrl.data import load_episodes, prepare_dataset
from lmrl.evaluation import load_policy_model
from lmrl.models.tiny import tiny_causal_lm, train_tokenizer
from lmrl.recipes import read_recipe

ROOT = Path(__file__).resolve().parents[1]
ROW = {"messages": [{"role": "user", "content": "Pick a door:"}, {"role": "assistant", "content": " red"}]}
LONG = {"messages": [{"role": "user", "content": "Pick a door: red door blue door green door."},
                     {"role": "assistant", "content": " red", "reward": 1.0}]}


def _args(tmp_path, **overrides):
    return ILQLConfig(output_dir=str(tmp_path / "out"), report_to="none", disable_tqdm=True, max_steps=1, **overrides)


# -- files ----------------------------------------------------------------------------------------------


def test_a_malformed_json_file_is_named_with_its_line_and_column(tmp_path):
    path = tmp_path / "episodes.json"
    path.write_text('[\n  {"messages": []},\n  {"messages": [}\n]\n')
    with pytest.raises(ValueError, match=r"episodes.json: line 3 column 17 is not valid JSON"):
        load_episodes(path)


def test_a_json_file_of_json_lines_is_read_as_lines(tmp_path):
    path = tmp_path / "episodes.json"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps(ROW) + "\n")
    assert len(load_episodes(path, cache_dir=str(tmp_path / "cache"))) == 2
    path.write_text(json.dumps(ROW) + "\n" + '{"messages": [\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_episodes(path)


def test_an_empty_file_is_named_in_the_error(tokenizer, tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text("")
    with pytest.raises(ValueError, match=r"episodes.jsonl: the file is empty"):
        prepare_dataset(str(path), tokenizer)


# -- long rows ------------------------------------------------------------------------------------------


def test_rows_longer_than_max_length_are_truncated_and_counted_or_refused_by_flag(tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="lmrl.data.loading"):
        data = prepare_dataset([ROW, LONG], tokenizer, max_length=8)
    assert data["truncated"] == [False, True] and len(data[1]["input_ids"]) == 8
    assert "1 of 2 episodes are longer than max_length=8 and were truncated from the left" in caplog.text
    with pytest.raises(ValueError, match=r"row 1: the episode is \d+ tokens long, longer than max_length=8"):
        prepare_dataset([ROW, LONG], tokenizer, max_length=8, truncation_mode="error")


def test_truncation_mode_reaches_the_trainer(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="row 1: the episode is"):
        ILQLTrainer(model=tiny_causal_lm(tokenizer, hidden_size=32), args=_args(tmp_path, max_length=8,
                    truncation_mode="error"), train_dataset=[ROW, LONG], processing_class=tokenizer)
    with pytest.raises(ValueError, match="truncation_mode must be"):
        _args(tmp_path, truncation_mode="cut")


# -- tokenizers and pre-tokenized data --------------------------------------------------------------------


def test_a_tokenizer_without_pad_pads_with_eos_and_one_without_either_is_refused(tmp_path):
    tokenizer = train_tokenizer(["Pick a door: red"], vocab_size=300)
    tokenizer.pad_token = None
    model = tiny_causal_lm(tokenizer, hidden_size=32)
    trainer = ILQLTrainer(model=model, args=_args(tmp_path), train_dataset=[ROW], processing_class=tokenizer)
    assert trainer.data_collator.pad_token_id == tokenizer.eos_token_id
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="The tokenizer .* has no eos_token"):
        ILQLTrainer(model=model, args=_args(tmp_path), train_dataset=[ROW], processing_class=tokenizer)


def test_a_pre_tokenized_dataset_needs_the_token_columns_and_finite_rewards(tokenizer, tmp_path):
    data = prepare_dataset([ROW, LONG], tokenizer)
    build = lambda dataset: ILQLTrainer(model=tiny_causal_lm(tokenizer, hidden_size=32), args=_args(tmp_path),  # noqa: E731
                                        train_dataset=dataset, processing_class=tokenizer)
    with pytest.raises(ValueError, match="has no column\\(s\\) action_mask, rewards"):
        build(data.remove_columns(["action_mask", "rewards"]))
    poisoned = data.map(lambda row, i: {"rewards": [float("nan")] * len(row["rewards"]) if i else row["rewards"]},
                        with_indices=True)
    with pytest.raises(ValueError, match="row 1: column 'rewards' holds nan"):
        build(poisoned)


# -- recipes ----------------------------------------------------------------------------------------------


def test_a_recipe_with_a_python_tag_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "marker"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"algorithm: ilql\ndataset: !!python/object/apply:pathlib.Path.touch ['{marker}']\n")
    assert main(["train", str(recipe)]) == 2
    assert "not valid plain YAML" in capsys.readouterr().err and not marker.exists()
    recipe.write_text("algorithm: ilql\ntau: [0.7\n")
    with pytest.raises(ValueError, match=r"evil.yaml: not valid plain YAML .*line 3"):
        read_recipe(recipe)


def test_resuming_from_a_missing_checkpoint_is_an_error_in_words(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["train", str(ROOT / "recipes" / "doors_ilql.yaml"), "--output_dir", str(tmp_path / "run"),
                 "--resume_from_checkpoint", str(tmp_path / "run" / "checkpoint-7")])
    assert code == 2 and "checkpoint-7: cannot resume: no such checkpoint directory" in capsys.readouterr().err


# -- model folders: safetensors only, no remote code ---------------------------------------------------


def test_a_model_folder_with_only_pickled_weights_is_refused(tokenizer, tmp_path):
    folder = tmp_path / "pickled"
    tiny_causal_lm(tokenizer, hidden_size=32).save_pretrained(folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="only in pickle format .*lmrl loads weights only from safetensors"):
        ILQLTrainer(model=str(folder), args=_args(tmp_path), train_dataset=[ROW], processing_class=tokenizer)
    with pytest.raises(ValueError, match="only in pickle format"):
        load_policy_model(folder, "ilql")


def test_a_model_folder_with_custom_code_is_not_run_unless_trust_remote_code(tokenizer, tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "custom_lm", "auto_map": {
        "AutoConfig": "modeling.CustomConfig", "AutoModelForCausalLM": "modeling.CustomLM"}}))
    (folder / "modeling.py").write_text("from pathlib import Path\nPath(__file__).with_name('marker').write_text('ran')\n")
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        ILQLTrainer(model=str(folder), args=_args(tmp_path), train_dataset=[ROW], processing_class=tokenizer)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_policy_model(folder, "bc")
    assert not (folder / "marker").exists()
