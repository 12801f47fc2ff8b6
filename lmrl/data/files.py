"""Episode files checked line by line before Arrow reads them: JSON lines, JSON arrays and CSV.

Each reader names the file, the line (from 1) and the field of the first problem, and says what to
do: bytes that are not UTF-8, malformed JSON, a line that is not an object, JSON the standard does
not allow (NaN, Infinity, 1e400, a key given twice: [`lmrl.data.strict_json`]), a row the schema
refuses ([`lmrl.data.validate_row`]) and a `null` where a labelled row's outcome is
([`lmrl.data.schema.null_outcome`]). Problems with the file's JSON come before problems with its rows,
so a file that Arrow cannot read is never blamed on a row. Memory holds one row at a time.

    >>> lines = check_json_lines(Path("episodes.jsonl"))  # doctest: +SKIP
    >>> lines[0]  # the line of the first row (blank lines are skipped)
    1
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

from .reading import JSONSyntaxError, json_array_items
from .schema import null_outcome, validate_row
from .strict_json import StrictJSONError, deepest_field, depth_error, loads

BLANK = b" \t\r\n"  # JSON's whitespace; other bytes on a line make it a row
NUMBER_COLUMNS = ("reward",)
BOOLEAN_COLUMNS = ("done", "labeled")


def _kind(value) -> str:
    kinds = {list: "a JSON array", str: "a string", bool: "true or false", type(None): "null"}
    return kinds.get(type(value), "a number")


def _decode(raw: bytes, path: Path, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        column = len(raw[:error.start].decode("utf-8", "replace")) + 1
        raise ValueError(f"{path}: line {number} is not UTF-8 text (byte 0x{raw[error.start]:02x} at column {column} "
                         "cannot be decoded). Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or fix "
                         "that line.") from None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(number from 1, bytes) of each line, a UTF-8 byte order mark dropped from the first."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            yield number, raw


def check_row(row, where: str) -> None:
    """What a file's row must be, beyond valid JSON: a valid episode ([`validate_row`]; an unlabeled
    row's reward is given only when training) with no `null` where its outcome is."""
    validate_row(row, where=where, unlabeled_reward=0.0)
    field = null_outcome(row)
    if field is not None:
        raise ValueError(f"{where}: field '{field}' is null on a labelled row, so the episode's outcome is unknown. "
                         "Write the reward, drop the key for reward 0, or mark the row \"labeled\": false if it "
                         "was logged without rewards.")


def json_lines(path: Path, hint: str = "") -> Iterator[tuple[int, dict]]:
    """(line number, row) of each non-blank line of a JSON lines file, each line read strictly."""
    for number, raw in _lines(path):
        if not raw.strip(BLANK):
            continue
        try:
            value = loads(_decode(raw, path, number))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number} is not valid JSON ({error.msg} at column {error.colno}). Fix or "
                             f"remove that line.{hint}") from None
        except StrictJSONError as error:
            raise ValueError(f"{path}: line {number}: {error}") from None
        if not isinstance(value, dict):
            raise ValueError(f"{path}: line {number} is {_kind(value)}, not an object: each line of a JSON lines file "
                             "is one episode, such as {\"messages\": [...]}. A file that is one JSON array of rows "
                             "is read when its name ends in .json.")
        yield number, value


def json_array(path: Path) -> Iterator[tuple[int, dict]]:
    """(line where it starts, row) of each element of a file that is one JSON array of rows."""
    try:
        for index, number, value, _ in json_array_items(path, items="rows"):
            if not isinstance(value, dict):
                raise ValueError(f"{path}: line {number}: element {index} of the array is {_kind(value)}, not an "
                                 "object: each element is one episode, such as {\"messages\": [...]}.")
            yield number, value
    except JSONSyntaxError as error:
        raise ValueError(f"{path}: line {error.line} column {error.column} is not valid JSON ({error.msg}). "
                         "Fix the file.") from None


def is_json_array(path: Path) -> bool:
    """Whether the file's first character (after whitespace) opens an array."""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            start = chunk.lstrip(BLANK + codecs.BOM_UTF8)
            if start:
                return start.startswith(b"[")
    return False


def json_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line, row) of each row of a .json or .jsonl file: a JSON array, or JSON lines."""
    if path.suffix.lower() == ".json" and is_json_array(path):
        return json_array(path)
    hint = " A .json file holds one JSON array of rows, or one row per line." if path.suffix.lower() == ".json" else ""
    return json_lines(path, hint)


def check_json_file(path: Path) -> array:
    """Check every row of a .json or .jsonl file; return the line of each row. The file's first JSON
    problem is raised before its first row problem."""
    lines = array("L")
    first_problem = None
    for number, row in json_rows(path):
        lines.append(number)
        if first_problem is None:
            try:
                check_row(row, f"{path}: line {number}")
            except ValueError as error:
                first_problem = error
    if first_problem is not None:
        raise first_problem
    return lines


def deep_row(path: Path, limit: int) -> ValueError | None:
    """The error for the first row of a .json or .jsonl file nested deeper than `limit` levels (what
    Arrow fails on without naming it), or None."""
    for number, row in json_rows(path):
        field = deepest_field(row, limit)
        if field is not None:
            return ValueError(f"{path}: line {number}: {depth_error(field, limit)}")
    return None


def _cell(column: str, text: str, where: str, labelled: bool):
    """A CSV cell of a column lmrl reads as a number or true/false (other columns stay text)."""
    value = text.strip()
    if column in NUMBER_COLUMNS:
        if not value:
            if labelled:
                raise ValueError(f"{where}: field '{column}' is empty on a labelled row, so the episode's outcome is "
                                 "unknown. Write the reward (0 for none), or add a column 'labeled' set to false on "
                                 "rows logged without rewards.")
            return None
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{where}: field '{column}' is {text!r}, not a number. Write a number.") from None
        if not math.isfinite(number):
            raise ValueError(f"{where}: field '{column}' is {text!r}, not a finite number. Write a finite number.")
        return number
    if not value:
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{where}: field '{column}' is {text!r}; write true or false (or leave it empty).")


def read_csv(path: Path) -> tuple[list[dict], array]:
    """The rows of a CSV file with a header line, and the line where each starts. Columns `reward`
    (a finite number), `done` and `labeled` (true or false) are typed; the others stay text as written
    (no guessing: "NA" or "123" in a prompt is that text)."""
    rows, lines = [], array("L")
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # a long prompt is one cell
    try:
        reader = csv.reader(_decode(raw, path, number) for number, raw in _lines(path))
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty, so there is nothing to train on. Check the path.")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ValueError(f"{path}: line 1: the header names column(s) {', '.join(map(repr, repeated))} more than "
                             "once. Give each column its own name.")
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num
            if not cells:  # a blank line
                continue
            where = f"{path}: line {start}"
            if len(cells) != len(header):
                raise ValueError(f"{where} has {len(cells)} cells, but the header (line 1) names {len(header)} "
                                 "columns. Quote cells that hold commas, or fix that line.")
            row = dict(zip(header, cells))
            labelled = row.get("labeled", "").strip().lower() != "false"
            for column in NUMBER_COLUMNS + BOOLEAN_COLUMNS:
                if column in row:
                    row[column] = _cell(column, row[column], where, labelled)
            check_row(row, where)
            rows.append(row)
            lines.append(start)
    except csv.Error as error:
        raise ValueError(f"{path}: line {reader.line_num} is not valid CSV ({error}). Fix that line.") from None
    finally:
        csv.field_size_limit(limit)
    return rows, lines


__all__ = ["check_json_file", "check_row", "deep_row", "json_rows", "read_csv"]
