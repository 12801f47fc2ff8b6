"""Recipes: one YAML file = the script fields (`ScriptArguments`) plus any field of the algorithm's
config (`ILQLConfig`, `BCConfig`, `MCConfig`, `CHAIConfig`, `CALMConfig`). `read_recipe` reads the file
and applies overrides; `parse_recipe` checks and splits them. `add_recipe_arguments` turns every field
into a command-line option (`lmrl train --help` lists them), and `parse_overrides` reads such options
into a dict of typed values. The functions that run recipes are in [`lmrl.api`].
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import math
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True)
class Algorithm:
    """What the commands need to know about an algorithm, in one place.

    value_heads: its checkpoint is an `AutoModelForCausalLMWithILQLHeads` (Q and V heads on the LM),
        which can steer a frozen LM or rank proposals by advantages;
    trains_critic: it trains a separate critic over a frozen proposal LM (CHAI), so evaluation proposes
        replies and the checkpoint ranks them.
    """

    name: str
    config: type
    trainer: type
    value_heads: bool = False
    trains_critic: bool = False


ALGORITHMS = {a.name: a for a in (
    Algorithm("ilql", ILQLConfig, ILQLTrainer, value_heads=True),
    Algorithm("bc", BCConfig, BCTrainer),
    Algorithm("mc", MCConfig, MCTrainer, value_heads=True),
    Algorithm("chai", CHAIConfig, CHAITrainer, trains_critic=True),
    Algorithm("calm", CALMConfig, CALMTrainer),
)}


@dataclass
class ScriptArguments:
    """Fields of a recipe that are not training arguments."""

    algorithm: str = field(metadata={"help": "The training algorithm.", "choices": list(ALGORITHMS)})
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
    task: str | None = field(default=None, metadata={"help": "Task to evaluate online in (lmrl eval): a name, e.g. maze, or a "
                                                "reference to your own, package.module:TASK."})
    task_kwargs: dict | None = field(default=None, metadata={"help": "Task options, e.g. {layout: ring}."})
    proposal_model: str | None = field(
        default=None,
        metadata={"help": "Evaluate by propose-and-rank: this LM samples num_proposals replies and the trained "
                  "model picks one (CHAI's critic; an ILQL model ranks by the sum of advantages). CHAI "
                  "defaults to model_name_or_path."},
    )
    rank_proposals: int | None = field(
        default=None, metadata={"help": "Replies proposed per turn when ranking (default: the CHAI config's num_proposals)."}
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


class _DuplicateKey(Exception):
    pass


class _RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (plain data only) that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        first = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in first:
                raise _DuplicateKey(f"line {key_node.start_mark.line + 1}: {key!r} is given a second time (first "
                                    f"on line {first[key]}), and YAML would keep the last silently; keep one")
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def plain_yaml(text: str, where: str):
    """Plain YAML data only: tags that would build Python objects are refused, and so is a key given
    twice in one mapping."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as err:
        raise ValueError(f"{where}: {err}.") from None
    except yaml.YAMLError as err:
        raise ValueError(
            f"{where}: not valid plain YAML ({' '.join(str(err).split())}). Recipes hold data only; "
            "tags such as !!python/object are refused and nothing in a recipe is executed."
        ) from None


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


def recipe_fields() -> dict[str, tuple[type, dataclasses.Field]]:
    """Every field a recipe may hold, once each: the script fields, then each algorithm's config (the
    fields of `TrainingArguments` they share appear once), as name -> (owning class, field)."""
    fields = {}
    for cls in (ScriptArguments, *(a.config for a in ALGORITHMS.values())):
        for spec in dataclasses.fields(cls):
            if spec.init and spec.name not in fields:
                fields[spec.name] = (cls, spec)
    return fields


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _number(kind: type):
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None

    convert.__name__ = kind.__name__
    return convert


def _yaml_value(text: str):
    try:
        return plain_yaml(text, "the value")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _option_type(annotation) -> tuple[object, list | None, str]:
    """(converter, choices, type name) of a field's annotation: plain scalars are read as themselves
    (`--save_strategy no` is the string "no"); lists, dicts and unions of several kinds as YAML."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums:  # e.g. IntervalStrategy | str
            return str, [e.value for e in enums[0]], "str"
        literal = [a for a in args if typing.get_origin(a) is typing.Literal]
        if len(args) == 1:
            return _option_type(args[0])
        if literal or len(args) > 1:
            return _yaml_value, None, " | ".join(getattr(a, "__name__", str(a)) for a in args)
    if typing.get_origin(annotation) is typing.Literal:
        return _yaml_value, list(typing.get_args(annotation)), "str"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return str, [e.value for e in annotation], "str"
    if annotation is bool:
        return _bool, None, "bool"
    if annotation in (int, float):
        return _number(annotation), None, annotation.__name__
    if annotation is str:
        return str, None, "str"
    return _yaml_value, None, getattr(annotation, "__name__", str(annotation)) + " (YAML)"


def _default_text(spec: dataclasses.Field) -> str:
    if spec.default is not dataclasses.MISSING:
        return repr(spec.default.value if isinstance(spec.default, enum.Enum) else spec.default)
    if spec.default_factory is not dataclasses.MISSING:
        return repr(spec.default_factory())
    return "required"


def add_recipe_arguments(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """Add every recipe field as `--field VALUE` (also `--field-name`), grouped by the class that owns it,
    with its type, default, help and choices; values given on the command line override the recipe's.
    Options the command defines itself (`skip`) are left out."""
    groups = {}
    for name, (cls, spec) in recipe_fields().items():
        if name in skip:
            continue
        if cls not in groups:
            algorithms = [a.name for a in ALGORITHMS.values() if a.config is cls]
            title = (f"{cls.__name__} fields (algorithm: {algorithms[0]})" if algorithms else
                     f"{cls.__name__} fields (every recipe)")
            groups[cls] = parser.add_argument_group(title)
        annotation = typing.get_type_hints(cls)[name]
        convert, choices, type_name = _option_type(annotation)
        choices = spec.metadata.get("choices", choices)
        help_text = (spec.metadata.get("help") or "").replace("%", "%%")
        help_text += f" [{type_name}; default: {_default_text(spec)}]".replace("%", "%%")
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        extra = {"nargs": "?", "const": True} if convert is _bool else {}
        groups[cls].add_argument(*flags, dest=name, type=convert, choices=choices, default=argparse.SUPPRESS,
                                 metavar=None if choices else type_name.split(" ")[0].upper(), help=help_text, **extra)


class _OverrideParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ValueError(message)


def parse_overrides(args: Sequence[str]) -> dict:
    """Command-line options `["--field", "value", ...]` as a dict of typed values (a bare `--flag` is
    true); an unknown option is an error that suggests the closest field."""
    parser = _OverrideParser(prog="lmrl", add_help=False, allow_abbrev=False)
    add_recipe_arguments(parser)
    values, unknown = parser.parse_known_args(list(args))
    if unknown:
        raise ValueError(unknown_options_message(unknown))
    return vars(values)


def unknown_options_message(unknown: Sequence[str]) -> str:
    """Says which options are not recipe fields, with the closest field's name where one is close."""
    names = list(recipe_fields())
    parts = []
    for option in unknown:
        if not option.startswith("-"):
            parts.append(f"{option!r} (a value without its --field)")
            continue
        name = option.lstrip("-").split("=", 1)[0].replace("-", "_")
        close = difflib.get_close_matches(name, names, n=1)
        parts.append(f"{option}" + (f" (did you mean --{close[0]}?)" if close else ""))
    return f"unknown option(s): {', '.join(parts)}. `lmrl train --help` lists every recipe field."


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


def find_recipe(checkpoint: str | Path) -> Path | None:
    """The recipe `lmrl train` saved beside a trained model, or None."""
    saved = Path(checkpoint, SAVED_RECIPE)
    return saved if saved.is_file() else None
