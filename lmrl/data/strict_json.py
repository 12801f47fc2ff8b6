"""JSON read as the standard writes it, for data that becomes a loss.

Python's `json` reads `NaN`, `Infinity` and `-Infinity` (which JSON does not have), reads `1e400` as
infinity, and keeps the last of a key given twice in one object; pyarrow and pandas turn some of these
into null, which lmrl would read as reward 0. Here each is an error that names the field:

    >>> loads('{"messages": [{"role": "assistant", "content": "hi", "reward": NaN}]}')
    Traceback (most recent call last):
    ...
    lmrl.data.strict_json.StrictJSONError: field 'messages[0].reward' is NaN, which JSON does not have. Write a finite number.

Valid JSON costs one pass of the standard parser with light hooks; the field is looked for only once a
problem is found. [`check_value`] applies the same rules to Python values (rows given in memory).
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 32  # objects and lists in a row; pyarrow fails near 63 and `datasets.Dataset.from_list` near 50
FIX_NUMBER = "Write a finite number."
_DEPTH_FIX = f"A row may nest objects and lists {MAX_DEPTH} levels deep: flatten it, or store the deep part as a JSON string."


class StrictJSONError(ValueError):
    """A value JSON cannot hold, or would hold ambiguously. `field` is its path in the value
    ("messages[1].reward"; "" for the value itself), `problem` what is wrong, `fix` what to do and
    `reason` the kind of problem without its values (to count by)."""

    def __init__(self, field: str, problem: str, fix: str = FIX_NUMBER, reason: str = "is not a finite number"):
        self.field, self.problem, self.fix, self.reason = field, problem, fix, reason
        super().__init__(f"{f'field {field!r}' if field else 'the value'} {problem}. {fix}")


class _Refused(Exception):
    """Raised by the fast hooks; the value is then parsed again to find the field."""


class _Mark:
    """Stands for a refused number in the second parse."""

    __slots__ = ("problem",)

    def __init__(self, problem: str):
        self.problem = problem


class _Duplicated(dict):
    """An object that had `key` twice (the second parse keeps the last, as `json` does)."""

    key: str


def _float_problem(text: str) -> str | None:
    return None if math.isfinite(float(text)) else f"is {text}, too large for a number (it would be read as infinity)"


def _int_problem(text: str) -> str | None:
    if len(text) <= 300:
        return None
    try:
        float(int(text))
    except (OverflowError, ValueError):  # more than a float holds, or more digits than Python converts
        return f"is an integer of {len(text.lstrip('-'))} digits, too large for a number"
    return None


def _fast_pairs(pairs: list) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _Refused
    return value


def _fast_constant(name: str):
    raise _Refused


def _fast_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan
        raise _Refused
    return value


def _fast_int(text: str) -> int:
    if len(text) > 300 and _int_problem(text):
        raise _Refused
    return int(text)


def _marked_pairs(pairs: list) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set = set()
        value = _Duplicated(value)
        value.key = next(key for key, _ in pairs if key in seen or seen.add(key))
    return value


def _marked_constant(name: str) -> _Mark:
    return _Mark(f"is {name}, which JSON does not have")


def _marked_float(text: str):
    problem = _float_problem(text)
    return _Mark(problem) if problem else float(text)


def _marked_int(text: str):
    problem = _int_problem(text)
    return _Mark(problem) if problem else int(text)


_FAST = json.JSONDecoder(object_pairs_hook=_fast_pairs, parse_constant=_fast_constant, parse_float=_fast_float,
                         parse_int=_fast_int)
_MARKED = json.JSONDecoder(object_pairs_hook=_marked_pairs, parse_constant=_marked_constant,
                           parse_float=_marked_float, parse_int=_marked_int)


def _child(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def _first_problem(value) -> StrictJSONError | None:
    """The first marked number or repeated key in `value` (depth first, in the text's order)."""
    stack = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _Mark):
            return StrictJSONError(path, item.problem)
        if isinstance(item, _Duplicated):
            return StrictJSONError(_child(path, item.key), "is given twice in one object, and JSON readers silently "
                                   "keep one of the two", "Keep the one you mean.", "is given twice")
        if isinstance(item, dict):
            stack += [(_child(path, key), child) for key, child in reversed(item.items())]
        elif isinstance(item, list):
            stack += [(_child(path, i), child) for i, child in reversed(list(enumerate(item)))]
    return None


def _too_deep() -> StrictJSONError:
    return StrictJSONError("", "nests objects and lists too deeply for Python's JSON reader", _DEPTH_FIX, "is nested too deep")


def raw_decode(text: str, pos: int = 0) -> tuple[object, int]:
    """`json.JSONDecoder().raw_decode(text, pos)`, refusing NaN, Infinity, numbers out of a float's range
    and repeated keys with a [`StrictJSONError`] naming the field. Malformed JSON raises
    `json.JSONDecodeError` as usual."""
    try:
        return _FAST.raw_decode(text, pos)
    except _Refused:
        value, end = _MARKED.raw_decode(text, pos)
        problem = _first_problem(value)
        if problem is None:  # cannot happen: both parses see the same text
            raise RuntimeError("a strict JSON check failed without a cause") from None
        raise problem from None
    except RecursionError:
        raise _too_deep() from None


def loads(text: str) -> object:
    """`json.loads(text)` as [`raw_decode`] reads it: one JSON value, surrounded by whitespace only."""
    value, end = raw_decode(text, len(text) - len(text.lstrip(" \t\r\n")))
    rest = len(text) - len(text[end:].lstrip(" \t\r\n"))
    if rest != len(text):
        raise json.JSONDecodeError("Extra data", text, rest)
    return value


def deepest_field(value, limit: int = MAX_DEPTH) -> str | None:
    """The path of the first object or list nested deeper than `limit` levels in `value`, or None."""
    stack = [("", value, 1)]
    while stack:
        path, item, level = stack.pop()
        if isinstance(item, dict):
            children = [(_child(path, key), child) for key, child in item.items()]
        elif isinstance(item, (list, tuple)):
            children = [(_child(path, i), child) for i, child in enumerate(item)]
        else:
            continue
        if level > limit:
            return path
        stack += [(child_path, child, level + 1) for child_path, child in reversed(children)]
    return None


def check_value(value, limit: int = MAX_DEPTH) -> None:
    """Apply the JSON rules to a Python value (a row given in memory): every float finite, no int
    beyond a float's range, at most `limit` levels of objects and lists. Raise [`StrictJSONError`]
    naming the first field at fault."""
    stack = [("", value, 1)]
    while stack:
        path, item, level = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise StrictJSONError(path, f"is {item!r}, not a finite number")
        elif isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 1000:
            try:
                float(item)
            except OverflowError:
                raise StrictJSONError(path, "is an integer too large for a number") from None
        elif isinstance(item, (dict, list, tuple)):
            if level > limit:
                raise depth_error(path, limit)
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack += [(_child(path, key), child, level + 1) for key, child in reversed(list(pairs))]


def depth_error(path: str, limit: int = MAX_DEPTH) -> StrictJSONError:
    """The error for the object or list at `path` nested deeper than `limit` levels."""
    return StrictJSONError(path, f"is nested more than {limit} levels deep (objects and lists), deeper than the Arrow "
                           "tables that hold the data can go", _DEPTH_FIX, "is nested too deep")


__all__ = ["MAX_DEPTH", "StrictJSONError", "check_value", "deepest_field", "depth_error", "loads",
           "raw_decode"]
