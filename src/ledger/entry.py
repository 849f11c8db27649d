"""Entries: an accepted statement with its place in a stream's hash chain (DESIGN §5)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from ledger.canonical import canonical, loads
from ledger.clock import RECORDED_PATTERN
from ledger.encoding import sha256_hex
from ledger.errors import Malformed
from ledger.keys import Ed25519PublicKey, verify
from ledger.statement import Statement, parse_statement, signing_input

GENESIS_PREV = "0" * 64
_HASH = re.compile(r"^[0-9a-f]{64}\Z")
_RECORDED = re.compile(RECORDED_PATTERN)
_STATEMENT_KEY = b',"statement":'


@dataclass(frozen=True)
class Entry:
    """One stored entry: its exact canonical bytes, and the fields read from them."""

    data: bytes
    seq: int
    prev: str
    recorded_at: str
    sig: str
    statement_bytes: bytes

    @cached_property
    def hash(self) -> str:
        """Entry hash: lowercase hex SHA-256 of the entry bytes."""
        return sha256_hex(self.data)

    def signature_valid(self, public: Ed25519PublicKey) -> bool:
        """True when the stored signature verifies over the stored statement bytes."""
        return verify(public, self.sig, signing_input(self.statement_bytes))

    @cached_property
    def statement(self) -> Statement:
        """The statement, decoded and validated from its stored bytes."""
        return parse_statement(self.statement_bytes)


def make_entry(statement_bytes: bytes, sig: str, seq: int, prev: str, recorded_at: str) -> Entry:
    """Build an entry around statement bytes that are embedded verbatim, never re-encoded."""
    data = canonical(
        {
            "statement": orjson.Fragment(statement_bytes),
            "sig": sig,
            "seq": seq,
            "prev": prev,
            "recorded_at": recorded_at,
        }
    )
    return Entry(data, seq, prev, recorded_at, sig, statement_bytes)


def read_entry(data: bytes) -> Entry:
    """Parse stored entry bytes, refusing anything that is not exactly a canonical entry."""
    document = loads(data)
    if type(document) is not dict or set(document) != {
        "statement",
        "sig",
        "seq",
        "prev",
        "recorded_at",
    }:
        raise Malformed("an entry has exactly statement, sig, seq, prev and recorded_at")
    # Re-encoding with sorted keys must give the same bytes back. (The stricter walk of
    # canonical() is for what we write; on reads it would cost more than the parse itself.)
    if orjson.dumps(document, option=orjson.OPT_SORT_KEYS) != data:
        raise Malformed("entry bytes are not canonical JSON")
    seq, prev, recorded_at, sig = (
        document["seq"],
        document["prev"],
        document["recorded_at"],
        document["sig"],
    )
    if not (type(seq) is int and seq >= 1 and _is_text(prev, recorded_at, sig)):
        raise Malformed("entry fields have the wrong types")
    if not (_HASH.match(prev) and _RECORDED.match(recorded_at)):
        raise Malformed("entry prev or recorded_at is not in its fixed format")
    # Canonical order puts "statement" last and no earlier value can contain this byte run,
    # so the first match is the key itself: the statement bytes are a verbatim slice.
    start = data.index(_STATEMENT_KEY) + len(_STATEMENT_KEY)
    return Entry(data, seq, prev, recorded_at, sig, data[start:-1])


def _is_text(*values: Any) -> bool:
    return all(type(value) is str for value in values)
