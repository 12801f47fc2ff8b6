"""Open any source of episodes and turn it into token-level rows."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, IterableDataset, concatenate_datasets, load_dataset

from .schema import Episode, validate_row
from .tokenization import tokenize_episode

logger = logging.getLogger(__name__)

_FILE_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
TOKENIZED_COLUMNS = ("input_ids", "attention_mask", "action_mask", "rewards", "dones", "returns", "truncated")


def _check_jsonl(path: Path) -> None:
    """Name the line of a malformed JSONL file (the `datasets` error does not)."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg}). Fix or remove that line.") from None


def _is_blank(path: Path, binary: bool) -> bool:
    """An empty file, or (for text formats) one of whitespace only."""
    if binary:
        return path.stat().st_size == 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def _check_json(path: Path) -> None:
    """Name the line and column of a malformed JSON file; a .json file of JSON lines is checked line by line."""
    text = path.read_text(encoding="utf-8")
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # several values: JSON lines
            _check_jsonl(path)
            return
        raise ValueError(
            f"{path}: line {err.lineno} column {err.colno} is not valid JSON ({err.msg}). Fix the file."
        ) from None


def _from_rows(rows: list) -> Dataset:
    """`Dataset.from_list` takes its columns from the first row; use every row's fields instead."""
    columns: dict = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {index}: expected an object with 'messages', got {type(row).__name__}.")
        columns.update(dict.fromkeys(row))
    return Dataset.from_list([{key: row.get(key) for key in columns} for row in rows])


def _concatenate(parts: list[Dataset]) -> Dataset:
    """The episodes of several sources, in order. A field that only some sources have is null in the
    others' rows (e.g. the `rating` of played episodes beside generated ones)."""
    columns = list(dict.fromkeys(name for part in parts for name in part.column_names))
    aligned = []
    for part in parts:
        for name in columns:
            if name not in part.column_names:
                part = part.add_column(name, [None] * len(part))
        aligned.append(part.select_columns(columns))
    try:
        return concatenate_datasets(aligned)
    except ValueError:  # the same field with different types (e.g. messages with and without rewards)
        return _from_rows([row for part in parts for row in part])


def load_episodes(source, split: str = "train", **load_kwargs) -> Dataset:
    """Episodes from a `Dataset`, a list of row dicts, a local JSON/JSONL/Parquet/CSV file or folder,
    a dataset id on the hub (`load_dataset(source, split=split)`), or a list of such paths and ids,
    trained on together."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, Path)) for s in source):
        return _concatenate([load_episodes(s, split, **load_kwargs) for s in source])
    if isinstance(source, DatasetDict):
        if split not in source:
            raise ValueError(f"The dataset has no split {split!r}; it has {list(source)}.")
        return source[split]
    if isinstance(source, IterableDataset):
        raise ValueError("Streaming datasets are not supported; pass a map-style `Dataset`.")
    if isinstance(source, list):
        return _from_rows(source)
    path = Path(str(source))
    if path.is_file():
        kind = _FILE_TYPES.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"{path}: unknown file type {path.suffix!r}; use one of {sorted(_FILE_TYPES)}.")
        if _is_blank(path, binary=kind in ("parquet", "arrow")):
            raise ValueError(f"{path}: the file is empty, so there is nothing to train on. Check the path.")
        if path.suffix.lower() == ".jsonl":
            _check_jsonl(path)
        elif path.suffix.lower() == ".json":
            _check_json(path)
        return load_dataset(kind, data_files=str(path), split="train", **load_kwargs)
    if path.is_dir():
        return load_dataset(str(path), split=split, **load_kwargs)
    if path.suffix.lower() in _FILE_TYPES or str(source).startswith((".", "/")):
        raise ValueError(f"{source}: no such file. Check the path (relative paths start from {Path.cwd()}).")
    return load_dataset(str(source), split=split, **load_kwargs)


def prepare_dataset(
    dataset,
    tokenizer,
    max_length: int | None = None,
    num_proc: int | None = None,
    transform: Callable[[Episode], Episode] | None = None,
    extra_columns: Callable[[dict, Episode, dict], dict] | None = None,
    truncation_mode: str = "keep_end",
    unlabeled_reward: float | None = None,
) -> Dataset:
    """Validate and tokenize every row into `input_ids, attention_mask, action_mask, rewards, dones`
    (plus `returns`, the episode's total reward, and `truncated`). `transform` may rewrite each
    validated episode first (e.g. to add a return to condition on); `extra_columns(row, episode,
    tokenized)` may add columns computed from the raw row and its tokens. Episodes longer than
    `max_length` are truncated from the left (`truncation_mode="keep_end"`, counted in the log) or
    raise a `ValueError` naming the row (`truncation_mode="error"`). Rows marked `"labeled": false`
    get `unlabeled_reward` on each assistant turn (without it they raise, naming the row)."""
    source = dataset
    dataset = load_episodes(dataset)
    if len(dataset) == 0:
        where = f" ({source})" if isinstance(source, (str, Path)) else ""
        raise ValueError(f"The dataset{where} is empty: there is nothing to train on. Check the file or the split.")
    strict = truncation_mode == "error" and max_length is not None

    def encode(row, index):
        episode = validate_row(row, index, unlabeled_reward)
        if transform is not None:
            episode = transform(episode)
        tokens = tokenize_episode(tokenizer, episode, None if strict else max_length)
        if strict and len(tokens.input_ids) > max_length:
            raise ValueError(
                f"row {index}: the episode is {len(tokens.input_ids)} tokens long, longer than max_length="
                f"{max_length}. Raise max_length, shorten or drop the row, or set truncation_mode='keep_end' "
                "to keep its last max_length tokens."
            )
        tokenized = tokens.as_row(episode.total_reward)
        if extra_columns is not None:
            tokenized.update(extra_columns(row, episode, tokenized))
        return tokenized

    tokenized = dataset.map(
        encode,
        with_indices=True,
        remove_columns=dataset.column_names,
        num_proc=num_proc,
        desc="Tokenizing episodes",
    )
    num_truncated = sum(tokenized["truncated"])
    if num_truncated:
        logger.warning(
            "%d of %d episodes are longer than max_length=%s and were truncated from the left "
            "(truncation_mode='error' stops instead).",
            num_truncated, len(tokenized), max_length,
        )
    return tokenized


def check_tokenized(dataset):
    """A dataset given already tokenized (validation was skipped) must have the token-level columns
    the collator pads, and finite rewards."""
    if dataset is None:
        return None
    missing = [name for name in TOKENIZED_COLUMNS[:5] if name not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The tokenized dataset has no column(s) {', '.join(missing)} (it has {', '.join(dataset.column_names)}). "
            "Pass messages rows instead and let lmrl tokenize them, or build it with lmrl.data.prepare_dataset."
        )
    if not pc.all(pc.is_finite(pc.list_flatten(dataset.data.column("rewards")))).as_py():
        index, rewards = next((i, r) for i, r in enumerate(dataset["rewards"]) if not all(map(math.isfinite, r)))
        bad = next(r for r in rewards if not math.isfinite(r))
        raise ValueError(f"row {index}: column 'rewards' holds {bad}, which is not finite. Fix or drop this row.")
    return dataset
