"""Recipes: one YAML file = the script fields (`ScriptArguments`) plus any field of the algorithm's
config (`ILQLConfig`, `BCConfig`, `MCConfig`, `CHAIConfig`, `CALMConfig`). `read_recipe` reads the file
and applies overrides; `parse_recipe` checks and splits them. `add_recipe_arguments` turns every field
into a command-line option (`lmrl train --help` lists them), and `parse_overrides` reads such options
into a dict of typed values. The functions that run recipes are in [`lmrl.api`].
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .options import add_recipe_arguments, parse_overrides, recipe_fields, unknown_options_message
from .schema import ALGORITHMS, Algorithm, ScriptArguments, get_peft_config, plain_yaml


def read_recipe(path: str | Path, overrides: Mapping[str, object] | Sequence[str] | None = None) -> dict:
    """The recipe file as a dict, with `overrides` applied: a dict of field -> value, or command-line
    options `["--field", "value", ...]` (read by [`parse_overrides`])."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such recipe file.")
    recipe = plain_yaml(path.read_text(), str(path)) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe is a mapping of field: value, got {type(recipe).__name__}.")
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    return {**recipe, **overrides}


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


def _fits(annotation, value) -> bool:
    """Whether a recipe value has the type its field declares (YAML gives it as data)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in args)
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation)
    if origin in (list, Sequence):
        return isinstance(value, list) and (not args or all(_fits(args[0], v) for v in value))
    if origin in (dict, Mapping) or annotation is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # a typing construct no recipe field uses


def _describe(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "text", type(None): "null",
             dict: "a mapping"}
    if annotation in names:
        return names[annotation]
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, Sequence):
        return f"a list of ({_describe(args[0])})" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def _as_number(value):
    """PyYAML reads `1e-4` (no dot) as text; such text is taken as the number it spells."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def check_field_types(recipe: Mapping, classes: Sequence[type], source: str) -> dict:
    """The recipe with each value checked against its field's type (numbers written as text such as
    `1e-4` read as numbers); a value of another type, a non-finite number or a missing required field
    is a `ValueError` naming the field, what it must be, and what was given."""
    checked = dict(recipe)
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            if not spec.init:
                continue
            if spec.name not in checked:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise ValueError(f"{source}: field '{spec.name}' is required: {spec.metadata.get('help', '')}")
                continue
            annotation, value = hints[spec.name], checked[spec.name]
            if not _fits(annotation, value) and _fits(annotation, _as_number(value)):
                value = checked[spec.name] = _as_number(value)
            if not _fits(annotation, value):
                hint = ""
                if isinstance(value, bool) and _fits(annotation, "text"):
                    hint = (" (YAML reads yes/no/on/off/true/false as booleans: quote the word, e.g. "
                            f'{spec.name}: "no")')
                raise ValueError(f"{source}: field '{spec.name}' must be {_describe(annotation)}, got {value!r}{hint}.")
    return checked


def parse_recipe(recipe: dict, source: str = "recipe"):
    """Split a recipe dict into (ScriptArguments, the algorithm's config)."""
    algorithm = recipe.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{source}: field 'algorithm' must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}.")
    config_class = ALGORITHMS[algorithm].config
    recipe = _renamed_fields(recipe, source)
    valid = {f.name for cls in (ScriptArguments, config_class) for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(recipe) - valid)
    if unknown:
        hints = [f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, valid, n=1))
                 else name for name in unknown]
        raise ValueError(
            f"{source}: unknown field(s) {', '.join(hints)} for algorithm {algorithm!r}. "
            f"Valid fields: {', '.join(sorted(valid))}."
        )
    recipe = check_field_types(recipe, (ScriptArguments, config_class), source)
    script, config = HfArgumentParser((ScriptArguments, config_class)).parse_dict(recipe)
    for name in PATH_FIELDS:  # e.g. model_name_or_path: ~/.cache/lmrl/models/smollm2 (lmrl fetch-model)
        value = getattr(script, name)
        if isinstance(value, str) and value.startswith("~"):
            setattr(script, name, str(Path(value).expanduser()))
        elif isinstance(value, list):  # dataset: [original.jsonl, played.jsonl]
            setattr(script, name, [str(Path(v).expanduser()) if isinstance(v, str) else v for v in value])
    if (script.model_name_or_path is None) == (script.tiny_model is None):
        raise ValueError(f"{source}: give exactly one of 'model_name_or_path' and 'tiny_model'.")
    if script.rank_rule and (not script.task or not script.proposal_model or script.algorithm == "chai"):
        raise ValueError(f"{source}: 'rank_rule' ranks proposal_model's replies by the task's rule: set 'task' and "
                         "'proposal_model', and an algorithm other than chai (its critic is the ranker).")
    by_candidates = script.algorithm == "chai" or script.proposal_model or script.plan_candidates or script.rank_rule
    if script.do_sample and by_candidates:
        raise ValueError(f"{source}: 'do_sample' samples generate()'s replies, but this recipe decodes by "
                         "propose-and-rank or planning, which sample their candidates already: drop do_sample "
                         "(rank_temperature > 0 samples the ranked choice).")
    if script.reuse_cache and by_candidates:
        raise ValueError(f"{source}: 'reuse_cache' keeps generate()'s KV cache across the turns of a rollout, but "
                         "this recipe decodes by propose-and-rank or planning: drop reuse_cache.")
    if script.gguf_file and script.model_name_or_path is None:
        raise ValueError(f"{source}: 'gguf_file' names a file inside 'model_name_or_path'; give that folder too.")
    if script.gguf_file and script.use_peft:
        from ..trainers.base import GGUF_WITH_PEFT

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


def find_recipe(checkpoint: str | Path) -> Path | None:
    """The recipe `lmrl train` saved beside a trained model, or None."""
    saved = Path(checkpoint, SAVED_RECIPE)
    return saved if saved.is_file() else None


__all__ = ["ALGORITHMS", "PATH_FIELDS", "RENAMED_FIELDS", "SAVED_RECIPE", "Algorithm", "ScriptArguments",
           "add_recipe_arguments", "check_field_types", "find_recipe", "get_peft_config", "parse_overrides",
           "parse_recipe", "plain_yaml", "read_recipe", "recipe_fields", "save_recipe", "unknown_options_message"]
