"""Reading published files: gunzipped when named .gz (a truncated or damaged one named in the error),
a big JSON array one element at a time (strict JSON, errors naming line and column), and a record of
the files a conversion opened, so that its outputs never replace one of them.

    >>> with files_read() as read:  # doctest: +SKIP
    ...     for index, value, text in iter_json_array("dialogues.json.gz", items="dialogues"):
    ...         ...
    >>> read  # doctest: +SKIP
    {PosixPath('/data/dialogues.json.gz')}
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .strict_json import StrictJSONError, raw_decode

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
    """The file's bytes, gunzipped when its name ends in .gz (as some distributions ship it). Reading a
    .gz file that is truncated or damaged raises a `ValueError` naming the file and how far it got."""
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
            reached = f" (the text inside was read up to line {self.lines_read})" if self.lines_read else ""
            if isinstance(error, gzip.BadGzipFile) and not self.lines_read:
                raise ValueError(f"{self.path} is not gzip data although its name ends in .gz ({error}). Rename it "
                                 "without .gz if it is plain text, or download it again.") from None
            problem = "ends before its gzip data does: the file is truncated" if isinstance(error, EOFError) else (
                f"holds damaged gzip data ({error})")
            raise ValueError(f"{self.path} {problem}{reached}. Download it again, or pass the uncompressed file.") from None
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


__all__ = ["JSONSyntaxError", "files_read", "iter_json_array", "json_array_items", "open_binary"]
