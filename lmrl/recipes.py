"""Recipes: one YAML file = the script fields (`ScriptArguments`) plus any field of the algorithm's
config (`ILQLConfig`, `BCConfig`, `MCConfig`, `CHAIConfig`, `CALMConfig`). `read_recipe` reads the file
and the command line's `--field value` overrides; `parse_recipe` checks and splits them. The commands
that run recipes are in `lmrl.cli`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .trainers import (
    BCConfig,
    BCTrainer,
    CALMConfig,
    CALMTrainer,
    CHAIConfig,
    CHAITrainer,
    ILQLConfig,
    ILQLTrainer,
    MCConfig,
    MCTrainer,
)

ALGORITHMS = {"ilql": (ILQLConfig, ILQLTrainer), "bc": (BCConfig, BCTrainer), "mc": (MCConfig, MCTrainer),
              "chai": (CHAIConfig, CHAITrainer), "calm": (CALMConfig, CALMTrainer)}


@dataclass
class ScriptArguments:
    """Fields of a recipe that are not training arguments."""

    algorithm: str = field(metadata={"help": f"One of {', '.join(ALGORITHMS)}."})
    dataset: str | list[str] = field(
        metadata={"help": "Episodes: a local JSON/JSONL/Parquet file or folder, or a hub id; or a list of them, "
                  "trained on together (e.g. [runs/data/negotiation.jsonl, runs/played/negotiation.jsonl])."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local path of the causal LM (or of a saved lmrl model)."}
    )
    gguf_file: str | None = field(
        default=None,
        metadata={"help": "Read the model and tokenizer from this GGUF file inside model_name_or_path (a folder or "
                  "hub repo), dequantized to float (needs `pip install lmrl[gguf]`). Not with use_peft: convert "
                  "the file first (lmrl fetch-model, or lmrl.models.gguf.convert_gguf)."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, when it is not stored with the model."}
    )
    tiny_model: dict | None = field(
        default=None,
        metadata={"help": "Instead of model_name_or_path: build a small model from a config, e.g. "
                  "{architecture: gpt2, hidden_size: 64, num_layers: 2, vocab_size: 512}, with a tokenizer "
                  "trained on the dataset's text; with tokenizer_name_or_path, for that tokenizer instead (no "
                  "vocab_size): e.g. a small value model that steers a frozen LM sharing its tokenizer. For CPU "
                  "demos and tests."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Optional episodes to evaluate the loss on."})
    task: str | None = field(default=None, metadata={"help": "Task to evaluate online in (lmrl eval), e.g. maze."})
    task_kwargs: dict | None = field(default=None, metadata={"help": "Task options, e.g. {layout: ring}."})
    proposal_model: str | None = field(
        default=None,
        metadata={"help": "Evaluate by propose-and-rank: this LM samples num_proposals replies and the trained "
                  "model picks one (CHAI's critic; an ILQL model ranks by the sum of advantages). CHAI "
                  "defaults to model_name_or_path."},
    )
    rank_proposals: int | None = field(
        default=None, metadata={"help": "Replies proposed per turn when ranking (default: CHAI's num_proposals, or 8)."}
    )
    steer_model: str | None = field(
        default=None,
        metadata={"help": "Evaluate by steering: this frozen LM (sharing the trained model's tokenizer) decodes, "
                  "reweighted by the trained ILQL model's advantages through ValueGuidedLogitsProcessor "
                  "(the trained model's beta, guidance_top_k and guidance_top_p)."},
    )
    plan_candidates: int = field(
        default=0, metadata={"help": "Evaluate by CALM planning: candidates per turn, each simulated with the "
                             "task's user simulator (0 = no planning)."}
    )
    plan_horizon: int = field(default=2, metadata={"help": "Agent turns each planning simulation looks ahead."})
    plan_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the planning candidates (beside the greedy one)."}
    )
    plan_user_model: str | None = field(
        default=None,
        metadata={"help": "Plan with a learned user model instead of the task's simulator: a causal LM trained on "
                  "the user's side of the dialogues (lmrl user-side DATA --out USER_DATA, then a BC recipe). "
                  "Needs plan_value_model."},
    )
    plan_value_model: str | None = field(
        default=None,
        metadata={"help": "With plan_user_model: an ILQL or MC model trained on the agent's rows whose Q at the "
                  "last agent reply scores each simulated continuation (its expected return)."},
    )
    rank_temperature: float = field(
        default=0.0, metadata={"help": "Ranking: 0 = best-scored reply, > 0 = sample softmax(score / T)."}
    )
    use_peft: bool = field(
        default=False,
        metadata={"help": "Train a LoRA adapter on the LM instead of its weights (heads stay fully trained); the "
                  "checkpoint is the adapter plus heads and names the base model."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt, e.g. [q_proj, v_proj] or [all-linear]; default: PEFT's choice "
                  "for the architecture (the attention projections)."},
    )


def get_peft_config(script: ScriptArguments):
    """The `LoraConfig` a recipe asks for (`use_peft: true`), or None."""
    if not script.use_peft:
        return None
    from peft import LoraConfig

    targets = script.lora_target_modules
    if targets == ["all-linear"]:  # PEFT takes this one as a string, not as a module name
        targets = "all-linear"
    return LoraConfig(task_type="CAUSAL_LM", r=script.lora_r, lora_alpha=script.lora_alpha,
                      lora_dropout=script.lora_dropout, target_modules=targets)


def _yaml(text: str, where: str):
    """Plain YAML data only (`yaml.safe_load`): tags that would build Python objects are refused."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(
            f"{where}: not valid plain YAML ({' '.join(str(err).split())}). Recipes hold data only; "
            "tags such as !!python/object are refused and nothing in a recipe is executed."
        ) from None


def read_recipe(path: str | Path, overrides: list[str] | None = None) -> dict:
    """The recipe as a dict, with `--field value` overrides applied (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such recipe file.")
    recipe = _yaml(path.read_text(), str(path)) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a mapping of field: value, got {type(recipe).__name__}.")
    overrides = list(overrides or [])
    while overrides:
        key = overrides.pop(0)
        if not key.startswith("--"):
            raise ValueError(f"Expected --field value after the recipe, got {key!r}.")
        key = key[2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
        elif overrides and not overrides[0].startswith("--"):
            value = overrides.pop(0)
        else:
            value = "true"
        recipe[key] = _yaml(value, f"--{key}")
    return recipe


# recipe fields that were renamed: old name -> new name (the old one still works, with a warning)
RENAMED_FIELDS = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _renamed_fields(recipe: dict, source: str) -> dict:
    recipe = dict(recipe)
    for old, new in RENAMED_FIELDS.items():
        if old not in recipe:
            continue
        if new in recipe:
            raise ValueError(f"{source}: give '{new}' only ('{old}' is its old name).")
        warnings.warn(f"{source}: recipe field '{old}' is deprecated (transformers renamed it); write "
                      f"'{new}: {recipe[old]}' instead.", FutureWarning, stacklevel=3)
        recipe[new] = recipe.pop(old)
    return recipe


# recipe fields that hold local paths, where a leading ~ means the home folder
PATH_FIELDS = ("dataset", "eval_dataset", "model_name_or_path", "tokenizer_name_or_path", "proposal_model",
               "steer_model", "plan_user_model", "plan_value_model")


def parse_recipe(recipe: dict, source: str = "recipe"):
    """Split a recipe dict into (ScriptArguments, the algorithm's config)."""
    algorithm = recipe.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{source}: field 'algorithm' must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}.")
    config_class, _ = ALGORITHMS[algorithm]
    recipe = _renamed_fields(recipe, source)
    valid = {f.name for cls in (ScriptArguments, config_class) for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(recipe) - valid)
    if unknown:
        raise ValueError(
            f"{source}: unknown field(s) {', '.join(unknown)} for algorithm {algorithm!r}. "
            f"Valid fields: {', '.join(sorted(valid))}."
        )
    script, config = HfArgumentParser((ScriptArguments, config_class)).parse_dict(recipe)
    for name in PATH_FIELDS:  # e.g. model_name_or_path: ~/.cache/lmrl/models/smollm2 (lmrl fetch-model)
        value = getattr(script, name)
        if isinstance(value, str) and value.startswith("~"):
            setattr(script, name, str(Path(value).expanduser()))
        elif isinstance(value, list):  # dataset: [original.jsonl, played.jsonl]
            setattr(script, name, [str(Path(v).expanduser()) if isinstance(v, str) else v for v in value])
    if (script.model_name_or_path is None) == (script.tiny_model is None):
        raise ValueError(f"{source}: give exactly one of 'model_name_or_path' and 'tiny_model'.")
    if script.gguf_file and script.model_name_or_path is None:
        raise ValueError(f"{source}: 'gguf_file' names a file inside 'model_name_or_path'; give that folder too.")
    if script.gguf_file and script.use_peft:
        from .trainers.base import GGUF_WITH_PEFT

        raise ValueError(f"{source}: 'gguf_file' with 'use_peft': {GGUF_WITH_PEFT}")
    return script, config


SAVED_RECIPE = "recipe.yaml"  # beside a trained model: the recipe that trained it (lmrl train writes it)


def save_recipe(recipe: dict, output_dir: str | Path) -> Path:
    """Write the recipe (overrides applied) beside the model it trained, its local paths made absolute,
    so that `lmrl play OUTPUT_DIR` finds the task and decoding from any folder."""
    recipe = dict(recipe)
    for name in PATH_FIELDS:
        value = recipe.get(name)
        paths = value if isinstance(value, list) else [value]
        if paths and all(isinstance(p, str) and Path(p).expanduser().exists() for p in paths):
            absolute = [str(Path(p).expanduser().resolve()) for p in paths]
            recipe[name] = absolute if isinstance(value, list) else absolute[0]
    path = Path(output_dir, SAVED_RECIPE)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def find_recipe(checkpoint: str | Path, recipes_dir: str | Path = "recipes") -> Path | None:
    """The recipe of a trained model: the one `lmrl train` saved beside it, else the recipe under
    `recipes_dir` whose `output_dir` is this folder (models trained before recipes were saved), else None."""
    saved = Path(checkpoint, SAVED_RECIPE)
    if saved.is_file():
        return saved
    target = Path(checkpoint).resolve()
    for path in sorted(Path(recipes_dir).rglob("*.yaml")):
        try:
            recipe = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(recipe, dict) and isinstance(recipe.get("output_dir"), str) \
                and Path(recipe["output_dir"]).expanduser().resolve() == target:
            return path
    return None
