"""Stored entries read for verification: one typed decode per entry, giving exactly what
`read_entry` and `entry.statement` give (or the same `Malformed`), sooner."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect
import orjson

from ledger.canonical import MAX_SAFE_INTEGER
from ledger.clock import parse_timestamp
from ledger.entry import Entry, in_fixed_format, read_entry, statement_slice
from ledger.errors import LedgerError
from ledger.statement import Header, Statement


def read(data: bytes) -> Entry:
    """Stored entry bytes as `read_entry` reads them, with their statement validated in full
    (`entry.statement`), or the same `Malformed` the two would raise: the same, sooner.

    Verification reads every entry in full. Here the bytes are decoded once, typed (`Header`
    for the statement, its body kept raw), and must be what msgspec encodes back with sorted
    keys; the raw body must be what orjson encodes back (`read_entry`'s own check, on the body
    alone: msgspec writes some numbers otherwise). The `Statement` is made of the header's
    fields, each checked against the constraints `Statement` declares for it (read from its
    type, so that the two cannot drift apart; the fields that repeat from entry to entry are
    not checked again), and of the body. Whatever that does not accept is left to `read_entry`
    and `entry.statement`, which name what is wrong as they always did. Both the header and
    the statement land where the cached properties keep them.
    """
    entry = _read_sooner(data)
    if entry is None:
        entry = read_entry(data)
        entry.statement  # noqa: B018 -- validated (and kept) now, or `Malformed` naming the flaw
    return entry


def _read_sooner(data: bytes) -> Entry | None:
    # Nesting no deeper than this is certain to encode back (`read_entry` writes the whole
    # entry, here only the body is written).
    if _CHECKS is None or data.count(b"{") + data.count(b"[") > _SHALLOW:
        return None
    try:
        stored = _decode_stored(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    # Text outside the body is either pattern-checked below (ASCII, nothing escaped) or the
    # signature (printable ASCII here): msgspec and orjson write such text alike.
    if _encode_sorted(stored) != data or not (stored.sig.isascii() and stored.sig.isprintable()):
        return None
    header = stored.statement
    raw = memoryview(header.body)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or orjson.dumps(body, option=orjson.OPT_SORT_KEYS) != raw:
        return None
    # (orjson reads integers beyond 64 bits as floats: those are left to `read_entry`.)
    if not 1 <= stored.seq <= MAX_SAFE_INTEGER or not in_fixed_format(
        stored.prev, stored.recorded_at
    ):
        return None
    statement = _made(header, body)
    if statement is None:
        return None
    entry = Entry(
        data, stored.seq, stored.prev, stored.recorded_at, stored.sig, statement_slice(data)
    )
    entry.__dict__.update(header=header, statement=statement)
    return entry


class _Header(Header, frozen=True, omit_defaults=True):
    """`Header` as canonical bytes hold it: `for` left out when there is none, so that an
    explicit null (which `Statement` refuses) does not encode back to the same bytes."""


class _Stored(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    prev: str
    recorded_at: str
    seq: int
    sig: str
    statement: _Header


_decode_stored = msgspec.json.Decoder(_Stored).decode
_SHALLOW = 200  # brackets in an entry, at most: orjson writes back 255 levels of nesting
_encode_sorted = msgspec.json.Encoder(order="sorted").encode
Check = tuple[int | None, int | None, re.Pattern[str] | None]  # length bounds, pattern

# `Statement`'s fields (Python name: JSON name), as `_made` builds one.
_FIELDS = {
    "ledger": "ledger",
    "id": "id",
    "stream": "stream",
    "kind": "kind",
    "by": "by",
    "kid": "kid",
    "at": "at",
    "body": "body",
    "for_": "for",
}
_REPEATED = ("ledger", "stream", "kind", "by", "kid")  # the same from entry to entry, mostly
_REMEMBERED = 4096  # combinations of them known to be valid, kept at most


def _constraints() -> dict[str, Check] | None:
    """Per text field of `Statement`: its length bounds and pattern, as msgspec checks them;
    None unless `Statement` has the fields `_made` builds, with text or (`body`) any JSON
    object, and `Header` reads the same fields as text (`for` possibly null) and a raw body."""
    statement = msgspec.inspect.type_info(Statement)
    header = msgspec.inspect.type_info(Header)
    if not (
        isinstance(statement, msgspec.inspect.StructType)
        and isinstance(header, msgspec.inspect.StructType)
        and statement.forbid_unknown_fields
        and header.forbid_unknown_fields
        and {f.name: f.encode_name for f in statement.fields} == _FIELDS
    ):
        return None
    text = msgspec.inspect.StrType()
    read = {f.encode_name: (f.required, f.type) for f in header.fields}
    if read != {
        **{name: (True, text) for name in _FIELDS.values() if name not in ("body", "for")},
        "body": (True, msgspec.inspect.RawType()),
        "for": (False, msgspec.inspect.UnionType((text, msgspec.inspect.NoneType()))),
    }:
        return None
    checks: dict[str, Check] = {}
    for f in statement.fields:
        kind = f.type.type if isinstance(f.type, msgspec.inspect.Metadata) else f.type
        if f.name == "body":
            if kind != msgspec.inspect.DictType(text, msgspec.inspect.AnyType()) or not f.required:
                return None
        elif isinstance(kind, msgspec.inspect.StrType) and f.required == (f.name != "for_"):
            pattern = None if kind.pattern is None else re.compile(kind.pattern)
            checks[f.name] = (kind.min_length, kind.max_length, pattern)
        else:
            return None
    return checks


_CHECKS = _constraints()
_SEEN: set[tuple[str, ...]] = set()


def _meets(check: Check, value: str) -> bool:
    shortest, longest, pattern = check
    return (
        (shortest is None or len(value) >= shortest)
        and (longest is None or len(value) <= longest)
        and (pattern is None or pattern.search(value) is not None)
    )


def _made(header: Header, body: dict[str, Any]) -> Statement | None:
    """The `Statement` of this header and its decoded body; None if in doubt."""
    checks = _CHECKS
    if checks is None:
        return None
    on_behalf_of = header.on_behalf_of
    if on_behalf_of is not None and not _meets(checks["for_"], on_behalf_of):
        return None
    repeated = (header.ledger, header.stream, header.kind, header.by, header.kid)
    if repeated not in _SEEN:
        if not all(
            _meets(checks[name], value) for name, value in zip(_REPEATED, repeated, strict=True)
        ):
            return None
        if len(_SEEN) >= _REMEMBERED:
            _SEEN.clear()
        _SEEN.add(repeated)
    if not (_meets(checks["id"], header.id) and _meets(checks["at"], header.at)):
        return None
    try:
        parse_timestamp(header.at)
    except LedgerError:
        return None
    return Statement(
        ledger=header.ledger,
        id=header.id,
        stream=header.stream,
        kind=header.kind,
        by=header.by,
        kid=header.kid,
        at=header.at,
        body=body,
        for_=msgspec.UNSET if on_behalf_of is None else on_behalf_of,
    )
