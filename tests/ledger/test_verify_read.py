"""Verification's reader (`ledger.entry_reader.read`): for any bytes, the entry `read_entry` reads
with its statement validated in full, or the same `Malformed`, only sooner."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import entry_reader, keys
from ledger.author import Author
from ledger.canonical import canonical
from ledger.entry import Entry, make_entry, read_entry
from ledger.entry_reader import read
from ledger.errors import Malformed
from ledger.statement import Header

ORIGIN = "clinic.example/accord"
RECORDED = "2026-01-30T10:00:00.000Z"
PREV = "0" * 64


def slow(data: bytes) -> Any:
    """What `read_entry` and then `entry.statement` give: the entry's fields, or the flaw."""
    try:
        entry = read_entry(data)
        entry.statement  # noqa: B018 -- validates the statement in full, or raises
    except Malformed as exc:
        return exc.detail
    return fields(entry)


def sooner(data: bytes) -> Any:
    try:
        entry = read(data)
    except Malformed as exc:
        return exc.detail
    return fields(entry)


def fields(entry: Entry) -> tuple[Any, ...]:
    """The entry as bytes and types: `==` alone would take 1, 1.0 and True for one another.
    (The header read sooner is of a subclass of `Header` that leaves out a missing `for` when
    encoded; as a `Header`, its fields are the same.)"""
    assert isinstance(entry.header, Header)
    header = msgspec.structs.asdict(entry.header)
    header["body"] = bytes(header["body"])  # a `msgspec.Raw`, whose repr is its address
    return (
        *msgspec.structs.astuple(entry),
        type(entry.statement),
        msgspec.json.encode(entry.statement),
        repr(header),
        repr(entry.statement.body),
    )


def read_sooner(data: bytes) -> bool:
    """Whether `read` took its quick way (rather than `read_entry`'s) for these bytes."""
    return entry_reader._read_sooner(data) is not None


def base_statement() -> dict[str, Any]:
    author = Author(ORIGIN, str(uuid.uuid4()), keys.generate())
    return author.statement(str(uuid.uuid4()), "opinion.given", {"decision": str(uuid.uuid4())})


def entry_bytes(statement: dict[str, Any], sig: str = "s" * 86) -> bytes:
    return make_entry(canonical(statement), sig, 1, PREV, RECORDED).data


def test_the_sooner_reading_is_on() -> None:
    # Were `Statement` or `Header` to change shape, it would turn itself off, and every entry
    # would be read in full: correct, but slower.
    assert entry_reader._CHECKS is not None


STATEMENT_CHANGES: list[dict[str, Any]] = [
    {},
    {"for": str(uuid.uuid4())},
    {"for": None},
    {"for": str(uuid.uuid4()).upper()},
    {"id": str(uuid.uuid4()).upper()},
    {"id": 7},
    {"stream": "case"},
    {"by": ""},
    {"kid": "k" * 42},
    {"kind": "a." + "b" * 63},
    {"kind": "Opinion.given"},
    {"ledger": ""},
    {"ledger": "clinic example"},
    {"ledger": "x" * 256},
    {"at": "2026-02-30T10:00:00Z"},
    {"at": "2026-01-30T10:00:00.123Z"},
    {"at": "2026-01-30 10:00:00Z"},
    {"body": []},
    {"body": "text"},
    {"body": {"for": None, "n": [1, -2, {"e": "é"}], "t": "\u2028\n"}},
    {"extra": 1},
]


@pytest.mark.parametrize("change", STATEMENT_CHANGES, ids=[str(c) for c in STATEMENT_CHANGES])
def test_a_statement_reads_as_the_full_decode_reads_it_or_is_refused_alike(
    change: dict[str, Any],
) -> None:
    data = entry_bytes({**base_statement(), **change})
    assert sooner(data) == slow(data)
    if change in ({}, {"body": {"for": None, "n": [1, -2, {"e": "é"}], "t": "\u2028\n"}}):
        assert read_sooner(data)


def test_fields_known_valid_from_an_earlier_entry_do_not_let_a_flaw_through() -> None:
    # The same author, stream and kind as an entry read before: those fields are not checked
    # again (`_SEEN`), the id, time and `for` still are.
    statement = base_statement()
    first = entry_bytes(statement)
    assert read_sooner(first)
    changes: list[dict[str, Any]] = [
        {"id": "not-a-uuid"},
        {"at": "2026-01-30 10:00:00Z"},
        {"for": "someone"},
        {"body": []},
    ]
    for change in changes:
        data = entry_bytes({**statement, **change})
        assert isinstance(slow(data), str), change
        assert sooner(data) == slow(data), change
    again = entry_bytes({**statement, "id": str(uuid.uuid4())})
    assert read_sooner(again)
    assert sooner(again) == slow(again)


def test_a_statement_without_a_required_field_is_refused_alike() -> None:
    statement = base_statement()
    del statement["kid"]
    data = entry_bytes(statement)
    assert isinstance(slow(data), str)
    assert sooner(data) == slow(data)


def _replace(old: bytes, new: bytes) -> Any:
    def change(data: bytes) -> bytes:
        assert old in data
        return data.replace(old, new, 1)

    return change


# Changes to a canonical entry's bytes: each is refused alike, or (the last few, which a
# reader could take for canonical) read alike.
BYTE_CHANGES = {
    "space-after-colon": _replace(b'"seq":1', b'"seq": 1'),
    "trailing-newline": lambda data: data + b"\n",
    "keys-out-of-order": lambda data: data.replace(
        b'{"prev":"' + PREV.encode() + b'",', b"{", 1
    ).replace(b'"seq":1,', b'"seq":1,"prev":"' + PREV.encode() + b'",', 1),
    "escaped-letter-in-prev": _replace(b'"prev":"0', b'"prev":"\\u0030'),
    "escaped-letter-in-sig": _replace(b'"sig":"s', b'"sig":"\\u0073'),
    "control-character-in-sig": _replace(b'"sig":"s', b'"sig":"\\u0001'),
    "lone-surrogate-in-sig": _replace(b'"sig":"s', b'"sig":"\\ud800'),
    "non-ascii-sig": _replace(b'"sig":"s', '"sig":"é'.encode()),
    "seq-zero": _replace(b'"seq":1', b'"seq":0'),
    "seq-text": _replace(b'"seq":1', b'"seq":"1"'),
    "seq-float": _replace(b'"seq":1', b'"seq":1.0'),
    "seq-true": _replace(b'"seq":1', b'"seq":true'),
    "seq-huge": _replace(b'"seq":1', b'"seq":18446744073709551616'),
    "seq-twice": _replace(b'"seq":1', b'"seq":1,"seq":1'),
    "prev-upper-case": _replace(b'"prev":"0', b'"prev":"A'),
    "recorded-at-without-millis": _replace(b'00.000Z"', b'00Z"'),
    "unknown-entry-field": _replace(b'{"prev"', b'{"a":1,"prev"'),
    "explicit-null-for": _replace(b'"id":"', b'"for":null,"id":"'),
    "body-key-twice": _replace(b'"body":{', b'"body":{"a":1,"a":1,'),
    "body-not-sorted": _replace(b'"body":{', b'"body":{"z":1,"a":1,'),
    "body-escaped-letter": _replace(b'"body":{', b'"body":{"a":"\\u0041",'),
    "body-lone-surrogate": _replace(b'"body":{', b'"body":{"a":"\\ud800",'),
    "body-float-as-msgspec-writes": _replace(b'"body":{', b'"body":{"a":1e16,'),
    "body-float-as-orjson-writes": _replace(b'"body":{', b'"body":{"a":1e+16,'),
    "body-huge-integer": _replace(b'"body":{', b'"body":{"a":18446744073709551616,'),
    "body-float": _replace(b'"body":{', b'"body":{"a":1.5,'),
    "body-64-bit-integer": _replace(b'"body":{', b'"body":{"a":18446744073709551615,'),
    "body-control-character": _replace(b'"body":{', b'"body":{"a":"\\u001f\\n",'),
}


@pytest.mark.parametrize("change", BYTE_CHANGES.values(), ids=BYTE_CHANGES.keys())
def test_entry_bytes_read_as_read_entry_reads_them_or_are_refused_alike(change: Any) -> None:
    data = change(entry_bytes(base_statement()))
    assert sooner(data) == slow(data)


@pytest.mark.parametrize("levels", [1, 60, 190, 200, 250, 251, 252, 253, 254, 300, 993, 1022, 3000])
def test_a_deeply_nested_body_reads_alike(levels: int) -> None:
    # Either way an entry nested past what orjson writes back (255 levels in all) or reads
    # (1,024) is refused with `Malformed`, never with another exception.
    nested = b'"body":{"x":' + b"[" * levels + b"]" * levels + b"}"
    data = _replace(b'"body":{}', nested)(entry_bytes({**base_statement(), "body": {}}))
    assert sooner(data) == slow(data)
    assert read_sooner(data) == (levels <= 190)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["\u2028", "\x7f", "\x00", '"', "\\", "é", "😀", "/"]
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(body=st.dictionaries(_TEXT, _JSON, max_size=5), sorted_by_msgspec=st.booleans())
def test_any_body_reads_as_read_entry_reads_it_or_is_refused_alike(
    body: dict[str, Any], sorted_by_msgspec: bool
) -> None:
    """Bodies of any JSON (floats and integers of any size too, which canonical JSON refuses
    but a store could hold), written as orjson or as msgspec would write them."""
    if sorted_by_msgspec:
        encoded = msgspec.json.encode(body, order="sorted")
    else:
        try:
            encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # integers beyond 64 bits, lone surrogates
            encoded = msgspec.json.encode(body, order="sorted")
    data = _replace(b'"body":{}', b'"body":' + encoded)(
        entry_bytes({**base_statement(), "body": {}})
    )
    assert sooner(data) == slow(data)
