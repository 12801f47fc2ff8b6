"""Stream a task's human corpus into training rows: read the published files one record at a time,
write JSONL (or Parquet) as rows come, and either stop at the first malformed record or leave it out
and list it in a side file. Memory holds one record and one output batch, whatever the file's size.

    summary = lmrl.tasks.convert_corpus("flight_booking", "train_data.json", "rows.jsonl", on_error="skip")
    summary["rows"], summary["rejected_by_reason"]   # e.g. 321401, {"'action.flight': empty ...": 41, ...}

A task's loader (`Task.load_corpus(path, on_error=..., **options)`) yields rows and, for a malformed
record, raises a `CorpusError` (or hands it to `on_error` and goes on with the next record).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from .outputs import atomic_output, check_outputs
from .strict_json import StrictJSONError, raw_decode

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


_READING: list[set[Path]] = []  # the files each conversion in progress has opened (see `files_read`)


@contextmanager
def files_read() -> Iterator[set[Path]]:
    """The set of every file [`open_binary`] opens while the block runs (resolved paths): what a
    conversion read, which its outputs must not replace."""
    opened: set[Path] = set()
    _READING.append(opened)
    try:
        yield opened
    finally:
        _READING.remove(opened)


def open_binary(path: str | Path) -> IO[bytes]:
    """The file's bytes, gunzipped when its name ends in .gz (as some distributions ship it). A .gz
    file that is truncated or damaged raises a `ValueError` naming the file and the last whole line."""
    path = Path(path)
    for opened in _READING:
        opened.add(path.resolve())
    return _Gunzip(path) if path.suffix == ".gz" else path.open("rb")


class _Gunzip(gzip.GzipFile):
    """`gzip.GzipFile` whose read errors (EOFError on a truncated file, BadGzipFile, zlib.error) name the
    file and how far it was read."""

    def __init__(self, path: Path):
        super().__init__(path, "rb")
        self.path, self.lines_read = path, 0

    def _guard(self, read, *args, count: bool = True):
        try:
            data = read(*args)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            read = f" (the text inside was read up to line {self.lines_read})" if self.lines_read else ""
            if isinstance(error, gzip.BadGzipFile) and not self.lines_read:
                raise ValueError(f"{self.path} is not gzip data although its name ends in .gz ({error}). Rename it "
                                 "without .gz if it is plain text, or download it again.") from None
            problem = "ends before its gzip data does: the file is truncated" if isinstance(error, EOFError) else (
                f"holds damaged gzip data ({error})")
            raise ValueError(f"{self.path} {problem}{read}. Download it again, or pass the uncompressed file.") from None
        if count:
            self.lines_read += data.count(b"\n")
        return data

    def read(self, size=-1):
        return self._guard(super().read, size)

    def read1(self, size=-1):
        return self._guard(super().read1, size)

    def readline(self, size=-1):
        return self._guard(super().readline, size)

    def peek(self, n=0):
        return self._guard(super().peek, n, count=False)


class JSONSyntaxError(ValueError):
    """Malformed JSON in a file: `path`, `line` and `column` (from 1) and the parser's `msg`."""

    def __init__(self, path: Path, line: int, column: int, msg: str):
        self.path, self.line, self.column, self.msg = path, line, column, msg
        super().__init__(f"{path}: invalid JSON at line {line}, column {column}: {msg}. "
                         "Fix the file or download it again.")


def iter_json_array(path: str | Path, items: str = "records", chunk_size: int = 1 << 20,
                    max_item_chars: int = 1 << 28) -> Iterator[tuple[int, object, str]]:
    """(index, value, raw text) of each element of the top-level JSON array in `path`, parsed one at
    a time over a buffer of `chunk_size` characters: memory holds one element, not the array. JSON
    is read strictly ([`lmrl.data.strict_json`]): NaN, Infinity, 1e400 or a key given twice is an error.

    Example:
        >>> [(i, v) for i, v, _ in iter_json_array("dialogues.json")]  # doctest: +SKIP
        [(0, {...}), (1, {...})]

    Raises:
        ValueError: the top level is not an array, or the JSON is malformed (`JSONSyntaxError`, naming
            line and column) or not strict JSON (naming the element, its line and the field).
    """
    for index, _, value, text in json_array_items(path, items, chunk_size, max_item_chars):
        yield index, value, text


def json_array_items(path: str | Path, items: str = "records", chunk_size: int = 1 << 20,
                     max_item_chars: int = 1 << 28) -> Iterator[tuple[int, int, object, str]]:
    """(index, line where it starts, value, raw text) of each element, as [`iter_json_array`] reads them."""
    path = Path(path)
    with open_binary(path) as raw:
        reader = io.TextIOWrapper(raw, encoding="utf-8")
        buffer = _Buffer(path, reader, chunk_size)
        try:
            if buffer.next_char() != "[":
                kind = {"{": "an object", "": "nothing (the file is empty)"}.get(buffer.peek(), "not an array")
                raise ValueError(f"{path}: the top level must be a list of {items}, got {kind}. "
                                 f"Pass a file whose top level is a JSON array of {items}.")
            buffer.pos += 1
            index = 0
            if buffer.next_char() == "]":
                buffer.pos += 1
            else:
                while True:
                    buffer.next_char()
                    line = buffer.line_at(buffer.pos)
                    try:
                        value, text = buffer.decode(max_item_chars)
                    except StrictJSONError as error:
                        raise ValueError(f"{path}: line {line} ({items.rstrip('s')} {index}): {error}") from None
                    yield index, line, value, text
                    index += 1
                    separator = buffer.next_char()
                    if separator == "]":
                        buffer.pos += 1
                        break
                    if separator != ",":
                        raise buffer.error("Expecting ',' delimiter" if separator else "Unterminated array")
                    buffer.pos += 1
                    buffer.compact()
            if buffer.next_char():
                raise buffer.error("Extra data")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text after line {buffer.line_at(len(buffer.text))} (byte "
                             f"0x{error.object[error.start]:02x} cannot be decoded). Save the file as UTF-8, or "
                             "download it again.") from None


class _Buffer:
    """Text read so far that is not yet parsed, with the line/column bookkeeping for error messages."""

    def __init__(self, path: Path, reader: IO[str], chunk_size: int):
        self.path, self.reader, self.chunk_size = path, reader, chunk_size
        self.text, self.pos, self.eof = "", 0, False
        self.lines_before, self.column_before = 0, 0  # of the text already dropped

    def fill(self) -> bool:
        chunk = "" if self.eof else self.reader.read(self.chunk_size)
        self.eof = not chunk
        self.text += chunk
        return bool(chunk)

    def peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def next_char(self) -> str:
        """The next non-whitespace character ('' at the end of the file), without consuming it."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.text) or not self.fill():
                return self.peek()

    def decode(self, max_chars: int) -> tuple[object, str]:
        self.next_char()  # raw_decode does not skip leading whitespace
        while True:
            try:
                value, end = raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                # the element may go on in the next chunk: the error is at the buffer's end (within a
                # cut literal such as "fals" or escape such as "\u00e") or in an unterminated string
                truncated = error.pos >= len(self.text) - 6 or error.msg.startswith("Unterminated string")
                if truncated and len(self.text) - self.pos < max_chars and self.fill():
                    continue
                raise self.error(error.msg, error.pos) from None
            if end == len(self.text) and self.fill():  # a number or literal may go on in the next chunk
                continue
            text, self.pos = self.text[self.pos:end], end
            return value, text

    def compact(self) -> None:
        if self.pos < self.chunk_size:
            return
        dropped = self.text[:self.pos]
        newlines = dropped.count("\n")
        self.column_before = len(dropped) - dropped.rfind("\n") - 1 if newlines else self.column_before + len(dropped)
        self.lines_before += newlines
        self.text, self.pos = self.text[self.pos:], 0

    def line_at(self, at: int) -> int:
        return self.lines_before + self.text.count("\n", 0, at) + 1

    def error(self, message: str, at: int | None = None) -> JSONSyntaxError:
        at = self.pos if at is None else at
        last_newline = self.text.rfind("\n", 0, at)
        column = at - last_newline if last_newline >= 0 else self.column_before + at + 1
        return JSONSyntaxError(self.path, self.line_at(at), column, message)


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
