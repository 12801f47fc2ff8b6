"""Open any source of episodes and turn it into token-level rows.

Files are checked row by row before Arrow reads them ([`lmrl.data.files`]): every error names the
file, the line and the field. A dataset loaded from a file remembers where its rows came from, so
errors found while tokenizing it (e.g. a row too long under `truncation_mode="error"`) name the line too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, IterableDataset, concatenate_datasets, load_dataset, load_from_disk
from datasets.exceptions import DatasetGenerationError

from .files import check_json_file, deep_row, read_csv
from .schema import Episode, validate_row
from .strict_json import MAX_DEPTH, StrictJSONError, check_value
from .tokenization import text_budget, tokenize_episode

logger = logging.getLogger(__name__)

_FILE_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
TOKENIZED_COLUMNS = ("input_ids", "attention_mask", "action_mask", "rewards", "dones", "returns", "truncated")
_ORIGIN = "_lmrl_origin"  # the attribute of a loaded Dataset that says where its rows came from


class RowOrigin:
    """Names row `index` of a dataset read from `path`: "path: line N" (the line the row starts on), or
    "path: row N" for a format without lines."""

    def __init__(self, path: Path, lines=None):
        self.path, self.lines = path, lines

    def __call__(self, index: int) -> str:
        return f"{self.path}: line {self.lines[index]}" if self.lines is not None else f"{self.path}: row {index}"


def row_name(dataset) -> Callable[[int], str | None]:
    """Where row `index` of `dataset` came from ("file: line N"), or None for rows with no file."""
    return getattr(dataset, _ORIGIN, None) or _no_origin


def _no_origin(index: int) -> None:
    return None


def _is_blank(path: Path, binary: bool) -> bool:
    """An empty file, or (for text formats) one of whitespace only."""
    if binary:
        return path.stat().st_size == 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def _from_rows(rows: list) -> Dataset:
    """Rows given in memory, checked as JSON would be (no NaN or infinity anywhere, at most
    `MAX_DEPTH` levels; see `lmrl.data.strict_json.check_value`). `Dataset.from_list` takes its
    columns from the first row; use every row's fields instead."""
    columns: dict = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {index}: expected an object with 'messages', got {type(row).__name__}.")
        try:
            check_value(row)
        except StrictJSONError as error:
            raise ValueError(f"row {index}: {error}") from None
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


def _root_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None or (error.__context__ is not None and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    return error


_ARROW_ERRORS = (DatasetGenerationError, pa.ArrowException, ValueError, RecursionError, OSError)


def _arrow_failure(path: Path, kind: str, error: BaseException) -> ValueError:
    """What to say when the `datasets` reader fails on a file that passed lmrl's checks."""
    if kind == "json":
        deep = deep_row(path, MAX_DEPTH)
        if deep is not None:
            return deep
    cause = _root_cause(error)
    return ValueError(f"{path}: the {kind} reader failed ({type(cause).__name__}: {cause}). Check that the file is a "
                      f"{kind} file of episode rows whose fields keep one type from row to row.")


def _load_file(path: Path, load_kwargs: dict) -> Dataset:
    kind = _FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown file type {path.suffix!r}; use one of {sorted(_FILE_TYPES)}.")
    if _is_blank(path, binary=kind in ("parquet", "arrow")):
        raise ValueError(f"{path}: the file is empty, so there is nothing to train on. Check the path.")
    lines = None
    if kind == "csv":
        rows, lines = read_csv(path)
        dataset = _from_rows(rows)
    else:
        if kind == "json":
            lines = check_json_file(path)
        try:
            dataset = load_dataset(kind, data_files=str(path), split="train", **load_kwargs)
        except _ARROW_ERRORS as error:
            raise _arrow_failure(path, kind, error) from None
        if lines is not None and len(dataset) != len(lines):
            raise ValueError(f"{path}: the JSON reader made {len(dataset)} rows of the file's {len(lines)}. Report this "
                             "with the file; meanwhile, convert the file to JSON lines with one object per line.")
    setattr(dataset, _ORIGIN, RowOrigin(path, lines))
    return dataset


def _is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file())


def _load_folder(path: Path, split: str, load_kwargs: dict) -> Dataset:
    if _is_saved_dataset(path):
        try:
            saved = load_from_disk(str(path))
        except _ARROW_ERRORS as error:
            cause = _root_cause(error)
            raise ValueError(f"{path}: the folder looks like a saved dataset (Dataset.save_to_disk) but cannot be read "
                             f"({type(cause).__name__}: {cause}). Save it again.") from None
        if isinstance(saved, DatasetDict):
            if split not in saved:
                raise ValueError(f"{path}: the saved dataset has no split {split!r}; it has {list(saved)}. Set "
                                 "dataset_split to one of them.")
            return saved[split]
        return saved
    for file in sorted(path.rglob("*")):
        if any(part.startswith((".", "__")) for part in file.relative_to(path).parts) or not file.is_file():
            continue
        if file.suffix.lower() in (".json", ".jsonl") and not _is_blank(file, binary=False):
            check_json_file(file)
        elif file.suffix.lower() == ".csv" and not _is_blank(file, binary=False):
            read_csv(file)
    try:
        return load_dataset(str(path), split=split, **load_kwargs)
    except _ARROW_ERRORS as error:
        cause = _root_cause(error)
        raise ValueError(f"{path}: the folder cannot be read as a dataset ({type(cause).__name__}: {cause}). Pass one "
                         "of its files, or a folder of JSON lines, Parquet or CSV files (split by name: train.jsonl, "
                         "test.jsonl), or one written by Dataset.save_to_disk.") from None


def load_episodes(source, split: str = "train", **load_kwargs) -> Dataset:
    """Episodes from a `Dataset`, a list of row dicts, a local JSON/JSONL/Parquet/CSV file or folder
    (or one written by `Dataset.save_to_disk`), a dataset id on the hub (`load_dataset(source,
    split=split)`), or a list of such paths and ids, trained on together. Files are checked row by row
    first ([`lmrl.data.files`]), so each error names the file, the line and the field."""
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
        return _load_file(path, load_kwargs)
    if path.is_dir():
        return _load_folder(path, split, load_kwargs)
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
    name = row_name(dataset)
    budget = text_budget(tokenizer, max_length) if strict else None
    fixes = "Raise max_length, shorten or drop the row, or set truncation_mode='keep_end' to keep its last max_length tokens."

    def encode(row, index):
        where = name(index) or f"row {index}"
        episode = validate_row(row, index, unlabeled_reward, where=where)
        if transform is not None:
            episode = transform(episode)
        if strict:
            long = next((i for i, turn in enumerate(episode.turns) if len(turn.content) > budget), None)
            if long is not None:  # far more than max_length tokens: not worth tokenizing to count them
                raise ValueError(f"{where}: message {long} is {len(episode.turns[long].content)} characters long, "
                                 f"more than max_length={max_length} tokens can hold. {fixes}")
        tokens = tokenize_episode(tokenizer, episode, None if strict else max_length)
        if strict and len(tokens.input_ids) > max_length:
            raise ValueError(f"{where}: the episode is {len(tokens.input_ids)} tokens long, longer than max_length="
                             f"{max_length}. {fixes}")
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
