"""Canonical JSON: RFC 8785 limited to ASCII keys and safe integers; the bytes that are signed."""

from __future__ import annotations

import json
from typing import Any

import orjson

from ledger.errors import Malformed

MAX_SAFE_INTEGER = 2**53 - 1
# Objects and arrays nest at most this deep. No statement needs more, and an entry (two levels
# around its statement's body) must still encode back: orjson stops at 255 levels.
MAX_DEPTH = 64

_OPTIONS = orjson.OPT_SORT_KEYS


def canonical(value: Any) -> bytes:
    """Encode `value` as canonical JSON, refusing anything JCS and orjson would disagree on."""
    if not _plain(value):
        _check(value, "$")  # raises, naming where
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        # Lone surrogates are the remaining case: they have no UTF-8 encoding.
        raise Malformed(f"cannot encode as canonical JSON: {exc}") from None


def loads_strict(data: bytes | memoryview) -> Any:
    """Parse untrusted JSON, refusing duplicate object keys (I-JSON, which RFC 8785 assumes):
    a reader keeping the first of two values would show something other than what was signed."""
    try:
        return json.loads(bytes(data), object_pairs_hook=_unique, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, Malformed):
            raise
        raise Malformed(f"not valid JSON: {exc}") from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise Malformed(f"object key {key!r} appears more than once")
        document[key] = value
    return document


def _no_constant(name: str) -> Any:
    raise Malformed(f"{name} is not a JSON number")


def loads(data: bytes | memoryview | str) -> Any:
    """Parse JSON text, turning parser errors into `Malformed`."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"not valid JSON: {exc}") from None


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether `_check` would pass `value`: the same rules, without building the paths that
    only an error needs."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    if (kind is dict or kind is list or kind is tuple) and depth == MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not _plain(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item, depth + 1) for item in value)
    return isinstance(value, orjson.Fragment)


def _check(value: Any, path: str, depth: int = 0) -> None:
    # Type checks by exact class: subclasses (IntEnum, str subclasses) may encode differently.
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return
        raise Malformed(f"{path}: integer {value} is outside ±(2^53-1)")
    if (kind is dict or kind is list or kind is tuple) and depth == MAX_DEPTH:
        raise Malformed(f"{path}: objects and arrays nest at most {MAX_DEPTH} levels deep")
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise Malformed(f"{path}: object key {key!r} is not a string")
            if not key.isascii():
                raise Malformed(f"{path}: object key {key!r} is not ASCII")
            _check(item, f"{path}.{key}", depth + 1)
        return
    if kind is list or kind is tuple:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
        return
    if kind is float:
        raise Malformed(f"{path}: number {value!r} is not an integer; floats are not allowed")
    if isinstance(value, orjson.Fragment):
        return  # already canonical bytes, embedded verbatim
    raise Malformed(f"{path}: {kind.__name__} values cannot be encoded as canonical JSON")
