"""Recipe fields as command-line options: `add_recipe_arguments` turns every field into `--field VALUE`
(`lmrl train --help` lists them with type, default, help and choices), and `parse_overrides` reads
such options into a dict of values typed by their fields."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Sequence

from .schema import ALGORITHMS, ScriptArguments, plain_yaml


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
