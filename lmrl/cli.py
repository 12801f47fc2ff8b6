"""`lmrl` command line: `lmrl train CONFIG.yaml [--field value ...]`.

A recipe is one YAML file: the script fields below plus any field of the algorithm's config
(`ILQLConfig`, `BCConfig`, `MCConfig`, which extend `transformers.TrainingArguments`). Command-line
`--field value` pairs override the file. Unknown fields are an error that lists the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .trainers import BCConfig, BCTrainer, ILQLConfig, ILQLTrainer, MCConfig, MCTrainer

ALGORITHMS = {"ilql": (ILQLConfig, ILQLTrainer), "bc": (BCConfig, BCTrainer), "mc": (MCConfig, MCTrainer)}


@dataclass
class ScriptArguments:
    """Fields of a recipe that are not training arguments."""

    algorithm: str = field(metadata={"help": f"One of {', '.join(ALGORITHMS)}."})
    dataset: str = field(metadata={"help": "Episodes: a local JSON/JSONL/Parquet file or folder, or a hub id."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local path of the causal LM (or of a saved lmrl model)."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, when it is not stored with the model."}
    )
    tiny_model: dict | None = field(
        default=None,
        metadata={"help": "Instead of model_name_or_path: build a small model from a config, e.g. "
                  "{architecture: gpt2, hidden_size: 64, num_layers: 2, vocab_size: 512}, with a tokenizer "
                  "trained on the dataset's text. For CPU demos and tests."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_dataset: str | None = field(default=None, metadata={"help": "Optional episodes to evaluate the loss on."})


def read_recipe(path: str | Path, overrides: list[str] | None = None) -> dict:
    """The recipe as a dict, with `--field value` overrides applied (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such recipe file.")
    recipe = yaml.safe_load(path.read_text()) or {}
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
        recipe[key] = yaml.safe_load(value)
    return recipe


def parse_recipe(recipe: dict, source: str = "recipe"):
    """Split a recipe dict into (ScriptArguments, the algorithm's config)."""
    algorithm = recipe.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{source}: field 'algorithm' must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}.")
    config_class, _ = ALGORITHMS[algorithm]
    valid = {f.name for cls in (ScriptArguments, config_class) for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(recipe) - valid)
    if unknown:
        raise ValueError(
            f"{source}: unknown field(s) {', '.join(unknown)} for algorithm {algorithm!r}. "
            f"Valid fields: {', '.join(sorted(valid))}."
        )
    script, config = HfArgumentParser((ScriptArguments, config_class)).parse_dict(recipe)
    if (script.model_name_or_path is None) == (script.tiny_model is None):
        raise ValueError(f"{source}: give exactly one of 'model_name_or_path' and 'tiny_model'.")
    return script, config


def build_trainer(script: ScriptArguments, config):
    from transformers import AutoTokenizer

    from .data import load_episodes
    from .tiny import build_tiny

    _, trainer_class = ALGORITHMS[script.algorithm]
    train = load_episodes(script.dataset, split=script.dataset_split)
    evaluation = load_episodes(script.eval_dataset) if script.eval_dataset else None
    if script.tiny_model is not None:
        model, tokenizer = build_tiny(train, **script.tiny_model)
    else:
        model = script.model_name_or_path
        tokenizer = AutoTokenizer.from_pretrained(
            script.tokenizer_name_or_path or script.model_name_or_path, trust_remote_code=config.trust_remote_code
        )
    return trainer_class(model=model, args=config, train_dataset=train, eval_dataset=evaluation,
                         processing_class=tokenizer)


def train(recipe_path: str, overrides: list[str]) -> dict:
    script, config = parse_recipe(read_recipe(recipe_path, overrides), str(recipe_path))
    trainer = build_trainer(script, config)
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model()
    summary = {"algorithm": script.algorithm, "output_dir": config.output_dir, **result.metrics}
    Path(config.output_dir, "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmrl", description="Offline RL for language models.")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="Train from a recipe: lmrl train RECIPE.yaml [--field value ...]")
    train_parser.add_argument("recipe")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "train":
            summary = train(args.recipe, rest)
            print(json.dumps(summary, indent=2))
    except ValueError as err:
        print(f"lmrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
