"""The GPU recipe of heads on a frozen model's feature cache runs end to end on a CPU, with a tiny Qwen2 saved
to disk in place of Qwen2.5-1.5B (a dry run: two optimizer steps)."""

import json
from pathlib import Path

from lmrl import AutoModelForCausalLMWithILQLHeads
from lmrl.api import train
from lmrl.models.tiny import build_tiny
from lmrl.recipes import parse_recipe, read_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "gpu" / "negotiation_cached_ilql.yaml"


def test_gpu_recipe_names_a_1b_to_8b_model_in_bf16_with_a_feature_cache():
    script, config = parse_recipe(read_recipe(RECIPE, {"use_cpu": True}), str(RECIPE))  # bf16 needs a GPU otherwise
    assert script.model_name_or_path == "Qwen/Qwen2.5-1.5B-Instruct" and config.bf16
    assert config.feature_cache and config.behavior_adapter and config.model_init_kwargs == {"dtype": "bfloat16"}


def test_gpu_recipe_dry_run_on_cpu_with_a_tiny_model(tmp_path):
    from lmrl.api import make_data

    data = tmp_path / "negotiation.jsonl"
    make_data("negotiation", 6, data, seed=0)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    tokenizer, model = build_tiny(rows, architecture="qwen2", hidden_size=32, num_layers=1, vocab_size=400,
                                  chat_template=True)
    base = tmp_path / "tiny-qwen2"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "out"
    summary = train(RECIPE, {"dataset": str(data), "model_name_or_path": str(base), "model_init_kwargs": None,
                             "bf16": False, "use_cpu": True, "max_steps": 2, "max_length": 128,
                             "per_device_train_batch_size": 2, "save_strategy": "no", "logging_steps": 1,
                             "output_dir": str(out), "feature_cache": str(tmp_path / "cache")})
    assert summary["trainable_fraction"] < 1.0
    assert (out / "ilql_heads.safetensors").is_file() and not (out / "model.safetensors").exists()
    manifest = json.loads((tmp_path / "cache" / "train" / "feature_cache.json").read_text())
    assert manifest["complete"] and manifest["rows"] == 6 and manifest["model"] == str(base)
    loaded = AutoModelForCausalLMWithILQLHeads.from_pretrained(out)
    assert loaded.config.base_model == str(base) and loaded.behavior_head is not None
