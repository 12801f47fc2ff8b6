"""Stream a task's human corpus into training rows: read the published files one record at a time,
write JSONL (or Parquet) as rows come, and either stop at the first malformed record or leave it out
and list it in a side file. Memory holds one record and one output batch, whatever the file's size.

    summary = lmrl.tasks.convert_corpus("flight_booking", "train_data.json", "rows.jsonl", on_error="skip")
    summary["rows"], summary["rejected_by_reason"]   # e.g. 321401, {"'action.flight': empty ...": 41, ...}

A task's loader (`Task.load_corpus(path, on_error=..., **options)`) yields rows and, for a malformed
record, raises a `CorpusError` (or hands it to `on_error` and goes on with the next record).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from .outputs import atomic_output, check_outputs
from .reading import JSONSyntaxError, files_read, iter_json_array, json_array_items, open_binary

__all__ = ["CorpusError", "JSONSyntaxError", "Rejections", "RowWriter", "convert_records", "default_rejected_path",
           "field_pattern", "files_read", "iter_json_array", "json_array_items", "open_binary"]

ON_ERROR = ("stop", "skip")
SKIP_HINT = ("Or convert with --on-error skip (on_error='skip') to leave out such records and list each one, "
             "with its reason, in a side file.")


class CorpusError(ValueError):
    """A malformed record of a corpus file. The message names the file, the record (`where`: "line 12",
    "dialogue 3 (uuid C_...)"), the field, what is wrong and what to do; `reason` is the short kind of
    problem that `--on-error skip` counts by; `record` holds the raw input for the side file.

    Example:
        >>> error = CorpusError("x.json: line 3: field 'action.flight' is empty. Fix it.", path="x.json",
        ...                     where="line 3", field="action.flight", reason="'action.flight' is empty")
        >>> error.reason
        "'action.flight' is empty"
    """

    def __init__(self, message: str, *, path, where: str, field: str | None, reason: str,
                 record: dict | None = None):
        super().__init__(message)
        self.path, self.where, self.field, self.reason = str(path), where, field, reason
        self.record = record or {}


def field_pattern(field: str) -> str:
    """`dialogue[3]` -> `dialogue[i]`: one reason for a kind of problem, whichever item it hit."""
    return re.sub(r"\[\d+\]", "[i]", field)


class Rejections:
    """`on_error="skip"`: each rejected record goes to a JSON-lines side file (where, field, reason,
    the full message and the raw input), and `counts` tallies them by reason. The file is created at
    the first rejection; [`convert_records`] gives it a temporary path and moves it into place at the end.

    Example:
        >>> rejected = Rejections("rows.rejected.jsonl")  # doctest: +SKIP
        >>> rows = list(task.load_corpus("train_data.json", on_error=rejected)); rejected.close()  # doctest: +SKIP
        >>> rejected.counts  # doctest: +SKIP
        Counter({"'action.flight' is empty but the status needs a flight": 2})
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.counts: Counter[str] = Counter()
        self._handle: IO[str] | None = None

    def __call__(self, error: CorpusError) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("w", encoding="utf-8")
        self._handle.write(json.dumps({"file": error.path, "where": error.where, "field": error.field,
                                       "reason": error.reason, "message": str(error), **error.record}) + "\n")
        self.counts[error.reason] += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class RowWriter:
    """Writes rows as they come: JSON lines, or Parquet (row groups of `batch_size` rows, with the
    given pyarrow `schema`) when the path ends in .parquet. It writes a temporary file beside PATH and
    moves it to PATH only when the block ends without an error ([`lmrl.data.outputs.atomic_output`]),
    so PATH is never a half-converted file and an existing PATH stays as it was if the block fails.

    Example:
        >>> with RowWriter("rows.jsonl") as writer:  # doctest: +SKIP
        ...     for row in rows:
        ...         writer.write(row)
    """

    def __init__(self, path: str | Path, schema=None, batch_size: int = 1000):
        self.path = Path(path)
        self.parquet = self.path.suffix.lower() == ".parquet"
        if self.parquet and schema is None:
            raise ValueError(f"{self.path}: this corpus has no Parquet schema; write JSON lines instead "
                             "(an --out path ending in .jsonl).")
        self.schema, self.batch_size = schema, batch_size
        self.rows, self._batch, self._writer = 0, [], None
        self._output = ExitStack()

    def __enter__(self) -> RowWriter:
        with ExitStack() as stack:
            partial = stack.enter_context(atomic_output(self.path))
            if self.parquet:
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(partial, self.schema)
            else:
                self._writer = partial.open("w", encoding="utf-8")
            stack.callback(self._writer.close)  # closed before the file is moved into place
            self._output = stack.pop_all()
        return self

    def write(self, row: dict) -> None:
        if self.parquet:
            self._batch.append(row)
            if len(self._batch) >= self.batch_size:
                self._flush()
        else:
            try:
                line = json.dumps(row, allow_nan=False)
            except ValueError as error:  # NaN or infinity: JSON has neither, and readers would see null or fail
                raise ValueError(f"{self.path}: row {self.rows + 1} holds a number that is not finite ({error}), "
                                 "which JSON cannot hold. Check the corpus record it comes from.") from None
            self._writer.write(line + "\n")
        self.rows += 1

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._batch:
            return
        first = self.rows - len(self._batch) + 1
        for offset, row in enumerate(self._batch):
            unknown = _unknown_fields(row, self.schema)
            if unknown:
                raise ValueError(f"{self.path}: row {first + offset} has field '{unknown}', which the Parquet "
                                 "schema does not hold. Write JSON lines (an --out path ending in .jsonl), "
                                 "which keep every field.")
        try:
            table = pa.Table.from_pylist(self._batch, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"{self.path}: rows {first} to {self.rows} do not fit the Parquet schema ({error}). "
                             "Write JSON lines (an --out path ending in .jsonl), which keep values as "
                             "they are.") from None
        self._writer.write_table(table)
        self._batch = []

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None and self.parquet:
            try:
                self._flush()
            except BaseException:
                if not self._output.__exit__(*sys.exc_info()):
                    raise
        self._output.__exit__(kind, error, traceback)


def _unknown_fields(value, schema_type, prefix: str = "") -> str | None:
    """The first key of `value` that the pyarrow struct (or schema) `schema_type` does not name."""
    import pyarrow as pa

    if isinstance(value, dict):
        names = schema_type.names if isinstance(schema_type, pa.Schema) else (
            [f.name for f in schema_type] if pa.types.is_struct(schema_type) else None)
        if names is None:
            return None
        for key, item in value.items():
            if key not in names:
                return f"{prefix}{key}"
            index = names.index(key)
            child = schema_type.field(index).type
            found = _unknown_fields(item, child, f"{prefix}{key}.")
            if found:
                return found
    elif isinstance(value, list) and (pa.types.is_list(schema_type) or pa.types.is_large_list(schema_type)):
        for i, item in enumerate(value):
            found = _unknown_fields(item, schema_type.value_type, f"{prefix[:-1]}[{i}].")
            if found:
                return found
    return None


def default_rejected_path(out: str | Path) -> Path:
    """rows.jsonl -> rows.rejected.jsonl (beside the output)."""
    return Path(out).with_suffix(".rejected.jsonl")


def convert_records(load_corpus: Callable[..., Iterator[dict]], source: str | Path, out: str | Path,
                    on_error: str = "stop", rejected: str | Path | None = None,
                    progress: Callable[[int], None] | None = None, schema=None, name: str = "corpus",
                    **options) -> dict:
    """Stream the rows `load_corpus(source, on_error=..., **options)` yields into `out` (.jsonl, or
    .parquet with the pyarrow `schema`). `on_error="stop"` (default) raises the first malformed record's
    error (file, line or dialogue, field, what to do); `on_error="skip"` converts the others, writes
    each rejected one to `rejected` (default: `out` with the suffix .rejected.jsonl) and reports the
    counts by reason. A task's corpus is converted by name with `lmrl.tasks.convert_corpus`.

    Outputs are written beside their paths and moved into place only when the conversion succeeds
    ([`lmrl.data.outputs.atomic_output`]); neither may be a file the conversion reads (the corpus, or
    e.g. its kb file) or the other output ([`lmrl.data.outputs.check_outputs`]).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}.")
    rejected_path = (rejected or default_rejected_path(out)) if on_error == "skip" else None
    outputs = {"--out": out, "--rejected": rejected_path}
    check_outputs(inputs={"the corpus file": source}, outputs=outputs)
    rejections = None
    start = time.perf_counter()
    try:
        with files_read() as read, ExitStack() as committed:
            if rejected_path is not None:  # entered first, so moved into place after `out`
                rejections = Rejections(committed.enter_context(atomic_output(rejected_path, missing_ok=True)))
            writer = committed.enter_context(RowWriter(out, schema=schema))
            try:
                for row in load_corpus(str(source), on_error=rejections, **options):
                    writer.write(row)
                    if progress is not None:
                        progress(writer.rows)
            finally:
                if rejections is not None:
                    rejections.close()
            check_outputs(inputs=[source, *sorted(read)], outputs=outputs)  # every file the loader opened
    except CorpusError as error:
        raise CorpusError(f"{error} {SKIP_HINT}", path=error.path, where=error.where, field=error.field,
                          reason=error.reason, record=error.record) from None
    seconds = time.perf_counter() - start
    summary = {"task": name, "source": str(source), "rows": writer.rows, "out": str(out),
               "seconds": round(seconds, 3)}
    if rejections is not None:
        summary["rejected"] = sum(rejections.counts.values())
        summary["rejected_by_reason"] = dict(rejections.counts.most_common())
        summary["rejected_file"] = str(rejected_path) if rejections.counts else None
    return summary
