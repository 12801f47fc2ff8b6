"""`lmrl train RECIPE.yaml`: recipes, overrides and errors in words."""

import json
import re
from pathlib import Path

import pytest
import yaml

from lmrl import AutoModelForCausalLMWithILQLHeads
from lmrl.cli import main
from lmrl.recipes import parse_overrides, parse_recipe, read_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "doors_ilql.yaml"


def test_overrides_on_the_command_line_win_over_the_recipe():
    recipe = read_recipe(RECIPE, ["--num_train_epochs", "2", "--beta=1.5", "--output-dir", "elsewhere"])
    script, config = parse_recipe(recipe)
    assert config.num_train_epochs == 2 and config.beta == 1.5 and config.output_dir == "elsewhere"
    assert script.algorithm == "ilql" and config.tau == 0.7


def test_unknown_fields_are_named_with_the_valid_ones(tmp_path):
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["tua"] = 0.9
    with pytest.raises(ValueError, match=r"unknown field\(s\) tua.*Valid fields: .*tau"):
        parse_recipe(recipe, "my.yaml")


def test_train_help_lists_every_recipe_field_with_its_type_default_and_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--beta FLOAT Guidance strength at decoding" in text and "[float; default: None]" in text
    assert "--guidance_top_k INT" in text and "[int; default: None]" in text
    assert "--learning_rate FLOAT" in text and "The initial learning rate" in text and "default: 5e-05" in text
    assert "--head_type {tied,untied}" in text  # choices from the field's metadata
    assert "ILQLConfig fields (algorithm: ilql)" in text and "CHAIConfig fields (algorithm: chai)" in text


def test_command_line_values_are_read_by_their_field_type_not_as_yaml():
    overrides = parse_overrides(["--save_strategy", "no", "--max_steps", "3", "--use_peft", "--beta=2",
                                 "--task_kwargs", "{layout: rooms}", "--dataset", "[a.jsonl, b.jsonl]"])
    assert overrides == {"save_strategy": "no", "max_steps": 3, "use_peft": True, "beta": 2.0,
                         "task_kwargs": {"layout": "rooms"}, "dataset": ["a.jsonl", "b.jsonl"]}


@pytest.mark.parametrize("args, message", [
    (["--max_steps", "three"], "argument --max_steps/--max-steps: expected an integer, got 'three'"),
    (["--head_type", "tide"], "argument --head_type/--head-type: invalid choice: 'tide'"),
    (["--lerning_rate", "1e-4"], "--lerning_rate \\(did you mean --learning_rate\\?\\)"),
    (["0.1"], "'0.1' \\(a value without its --field\\)"),
])
def test_a_bad_command_line_value_is_named_with_the_field(args, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides(args)


def test_a_misspelt_recipe_field_gets_a_suggestion():
    recipe = {**yaml.safe_load(RECIPE.read_text()), "lerning_rate": 1e-4}
    with pytest.raises(ValueError, match=r"lerning_rate \(did you mean learning_rate\?\)"):
        parse_recipe(recipe, "my.yaml")


def test_a_choice_declared_on_a_field_is_checked_in_the_recipe_too():
    recipe = {**yaml.safe_load(RECIPE.read_text()), "truncation_mode": "keep_start"}
    with pytest.raises(ValueError, match="truncation_mode must be one of keep_end, error, got 'keep_start'"):
        parse_recipe(recipe, "my.yaml")


def test_recipe_needs_one_model_source():
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["model_name_or_path"] = "gpt2"
    with pytest.raises(ValueError, match="exactly one of"):
        parse_recipe(recipe)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_train_command_runs_the_recipe_and_saves_a_loadable_model(tmp_path, monkeypatch, capsys, lora):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    peft = ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8"] if lora else []
    code = main(["train", str(RECIPE), "--max_steps", "3", "--output_dir", str(out), "--logging_steps", "1", *peft])
    assert code == 0
    assert '"trainable_fraction"' in capsys.readouterr().out  # printed by lmrl train
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["algorithm"] == "ilql" and summary["train_loss"] > 0
    assert 0 < summary["trainable_fraction"] < (0.5 if lora else 1.0)  # a tiny model: the heads dominate
    model = AutoModelForCausalLMWithILQLHeads.from_pretrained(out)
    assert model.config.guidance_top_p == 0.9 and model.config.beta == 8.0
    assert model.has_peft_adapter == lora and (out / "adapter_config.json").exists() == lora
    assert (out / "tokenizer.json").exists()


def test_missing_recipe_is_an_error_in_words(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "no such recipe file" in capsys.readouterr().err


@pytest.mark.slow  # over 15 s: left out of CI's latest and floor jobs
def test_make_data_train_eval_compare_round_trip(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    data = tmp_path / "maze.jsonl"
    assert main(["make-data", "maze", "--episodes", "40", "--out", str(data), "--option", "layout=ring"]) == 0
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 40 and rows[0]["messages"][0]["role"] == "system"

    runs = []
    for algo in ("bc", "ilql", "ilql_lora"):  # ilql_lora: a LoRA adapter on the bc model just trained
        out = tmp_path / algo
        recipe = str(ROOT / "recipes" / "maze" / f"{algo}.yaml")
        overrides = ["--dataset", str(data), "--output_dir", str(out), "--max_steps", "2"]
        if algo == "ilql_lora":
            overrides += ["--model_name_or_path", str(tmp_path / "bc")]
        assert main(["train", recipe, *overrides]) == 0
        assert main(["eval", recipe, "--checkpoint", str(out), "--episodes", "4", "--dataset", str(data)]) == 0
        report = json.loads((out / "eval.json").read_text())
        assert report["episodes"] == 4 and report["algorithm"] == algo.split("_")[0] and "normalized" in report
        runs.append(str(out))
    assert (tmp_path / "ilql_lora" / "adapter_config.json").exists()
    capsys.readouterr()
    plot = tmp_path / "compare.png"
    assert main(["compare", *runs, "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "| bc | bc |" in table and "| ilql | ilql |" in table and "| ilql_lora | ilql |" in table
    assert plot.stat().st_size > 1000


def test_eval_of_a_missing_critic_checkpoint_is_an_error_in_words(tmp_path, capsys):
    recipe = str(ROOT / "recipes" / "negotiation" / "chai.yaml")
    assert main(["eval", recipe, "--checkpoint", str(tmp_path / "none"), "--episodes", "1",
                 "--dataset", str(ROOT / "examples" / "data" / "doors.jsonl")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


def test_eval_of_a_missing_checkpoint_is_an_error_in_words(tmp_path, capsys):
    recipe = str(ROOT / "recipes" / "maze" / "bc.yaml")
    assert main(["eval", recipe, "--checkpoint", str(tmp_path / "none"), "--episodes", "2",
                 "--dataset", str(ROOT / "examples" / "data" / "doors.jsonl")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


ACCELERATE_CONFIGS = ROOT / "recipes" / "accelerate"


@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("*.yaml")
                                          if ACCELERATE_CONFIGS not in p.parents))
def test_every_shipped_recipe_parses(recipe):
    fields = read_recipe(ROOT / recipe)
    fields.pop("bf16", None)  # GPU recipes: bf16 needs a GPU to construct the config
    script, config = parse_recipe(fields, recipe)
    assert script.algorithm in ("ilql", "bc", "mc", "chai", "calm") and config.output_dir.startswith("runs/")


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED"),
                                        ("deepspeed_zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_load_as_accelerate_reads_them(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ACCELERATE_CONFIGS / f"{name}.yaml"))
    assert config.distributed_type.name == kind and config.num_processes == 2
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2  # shards per parameter: the Polyak update lines up
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_convert_writes_a_human_corpus_as_training_rows(tmp_path, capsys):
    out = tmp_path / "cb.jsonl"
    assert main(["convert", "negotiation", str(ROOT / "tests" / "fixtures" / "craigslist_bargain.json"),
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and json.loads(capsys.readouterr().out)["rows"] == 3
    assert rows[0]["messages"][0]["role"] == "system"
    assert main(["convert", "maze", str(out), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no human-corpus loader" in capsys.readouterr().err


def test_a_recipe_asking_lora_on_all_linear_layers_adapts_every_linear_layer(tokenizer):
    from peft import get_peft_model

    from lmrl.models.tiny import tiny_causal_lm
    from lmrl.recipes import get_peft_config

    script, _ = parse_recipe({"algorithm": "bc", "dataset": "rows.jsonl", "model_name_or_path": "base",
                              "output_dir": "out", "use_peft": True, "lora_target_modules": ["all-linear"]})
    model = get_peft_model(tiny_causal_lm(tokenizer, "llama", num_layers=1), get_peft_config(script))
    adapted = {name.split(".lora_A")[0].split(".")[-1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_recipe_paths_may_start_from_the_home_folder():
    script, _ = parse_recipe({"algorithm": "bc", "dataset": "~/data/rows.jsonl", "output_dir": "out",
                              "model_name_or_path": "~/.cache/lmrl/models/smollm2", "tokenizer_name_or_path": "gpt2"})
    assert script.model_name_or_path == str(Path.home() / ".cache/lmrl/models/smollm2")
    assert script.dataset == str(Path.home() / "data/rows.jsonl") and script.tokenizer_name_or_path == "gpt2"


def test_a_recipe_that_gives_a_field_twice_is_refused_naming_both_lines(tmp_path, capsys):
    recipe = tmp_path / "twice.yaml"
    recipe.write_text(RECIPE.read_text() + "beta: 2.0\n")
    assert main(["train", str(recipe), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}: line " in err and "'beta' is given a second time (first on line" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, message", [
    ("max_steps", "three", "field 'max_steps' must be an integer, got 'three'"),
    ("learning_rate", "[1, 2]", "field 'learning_rate' must be a finite number, got [1, 2]"),
    ("learning_rate", ".nan", "field 'learning_rate' must be a finite number, got nan"),
    ("save_strategy", "no", "field 'save_strategy' must be SaveStrategy or text, got False (YAML reads yes/no"),
])
def test_a_recipe_value_of_the_wrong_type_is_named_with_its_field(tmp_path, field, value, message):
    text = "\n".join(line for line in RECIPE.read_text().splitlines() if not line.startswith(f"{field}:"))
    recipe = tmp_path / "typed.yaml"
    recipe.write_text(f"{text}\n{field}: {value}\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_recipe(read_recipe(recipe), str(recipe))


def test_a_recipe_without_its_dataset_says_the_field_is_required(tmp_path):
    text = "\n".join(line for line in RECIPE.read_text().splitlines() if not line.startswith("dataset:"))
    with pytest.raises(ValueError, match="my.yaml: field 'dataset' is required: Episodes"):
        parse_recipe(yaml.safe_load(text), "my.yaml")
