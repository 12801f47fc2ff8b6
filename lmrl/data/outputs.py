"""Files a command writes: never one it reads, never two outputs to one path, and never half a file.

    check_outputs(inputs={"the corpus": source}, outputs={"--out": out, "--rejected": rejected})
    with atomic_output(out) as partial:         # a temporary file beside `out`
        partial.write_text(text)                 # out is replaced only when the block succeeds

Paths are compared as the files they name: relative paths, `..`, symbolic and hard links resolve to
the same file. A failed command leaves no temporary file behind and the existing output untouched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

PathLike = str | os.PathLike
Paths = Mapping[str, PathLike | None] | Iterable[PathLike | None]


def _named(paths: Paths) -> list[tuple[str, str]]:
    """(label, path as given) of each path; a plain list labels each path with itself."""
    items = paths.items() if isinstance(paths, Mapping) else ((None, path) for path in paths)
    return [(label or os.fspath(path), os.fspath(path)) for label, path in items if path is not None]


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether `a` and `b` name one file (after resolving relative paths and links), existing or not."""
    a, b = Path(a), Path(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:  # one of them does not exist (yet)
        return False


def check_outputs(inputs: Paths = (), outputs: Paths = ()) -> None:
    """Raise a `ValueError` naming both paths when an output is one of the inputs or two outputs are one
    file. `inputs` and `outputs` are lists of paths, or mappings from what names a path (e.g. "--out")
    to the path; None entries are skipped.

    Example:
        >>> check_outputs(inputs=["rows.jsonl"], outputs={"--out": "./rows.jsonl"})
        Traceback (most recent call last):
        ...
        ValueError: --out (./rows.jsonl) is rows.jsonl, which this command reads: writing it would destroy its input. Pass another path for --out.
    """
    read, written = _named(inputs), _named(outputs)
    for label, path in written:
        for source_label, source in read:
            if same_file(path, source):
                raise ValueError(f"{_show(label, path)} is {_show(source_label, source)}, which this command reads: "
                                 f"writing it would destroy its input. Pass another path for {label}.")
    for i, (label, path) in enumerate(written):
        for other_label, other in written[i + 1:]:
            if same_file(path, other):
                raise ValueError(f"{_show(label, path)} and {_show(other_label, other)} are the same file, so one "
                                 f"output would overwrite the other. Pass different paths.")


def _show(label: str, path: str) -> str:
    return label if label == path else f"{label} ({path})"


def partial_path(path: PathLike) -> Path:
    """The temporary name beside `path` that [`atomic_output`] writes first: hidden, unique, `.partial`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")


@contextmanager
def atomic_output(path: PathLike, missing_ok: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same folder, so the rename is atomic) to write the output
    to; when the block ends without an error it replaces `path` (`os.replace`), and when it raises the
    temporary file is removed and `path` is left as it was. The parent folder is created if needed.
    A block that writes nothing is an error, unless `missing_ok`: then it means "no output this time"
    and an old `path` (from an earlier run, which would mislead) is removed.

    Example:
        >>> with atomic_output("out/rows.jsonl") as partial:  # doctest: +SKIP
        ...     with partial.open("w") as handle:
        ...         handle.write('{"messages": []}\\n')
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass the path of the file to write.")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if not partial.exists():
        if missing_ok:
            path.unlink(missing_ok=True)
            return
        raise FileNotFoundError(f"{path}: nothing was written to the output (its temporary file {partial} does not "
                                "exist), so the output was left as it was.")
    os.replace(partial, path)


__all__ = ["atomic_output", "check_outputs", "partial_path", "same_file"]
