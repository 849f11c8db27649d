"""Entries: an accepted statement with its place in a stream's hash chain (docs/formats.md).

Two readers. `read_entry` refuses anything but an exact canonical entry; every reader of the
ledger itself uses it (replay, `check_stream`, verification), and folding then validates each
statement in full. `follow_entry` is for the projection follower, which reads the whole log and
would spend more on those checks than on all the rest of its work: it decodes the entry and its
statement's fields in one typed pass, and leaves out the canonical re-encoding and the pattern
checks of `prev`, `recorded_at` and the statement's fields. That is safe there: the follower
still hashes the stored bytes and checks each entry's seq, prev and time against the one
before, so an entry altered in the store breaks its stream's chain at the next entry as on any
other read; everything it reads was validated before it was stored; and it never checked
signatures, which are what the canonical form protects. Verification (`check_stream`, the
`verify` command) does all of it.
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from typing import Any

import msgspec
import orjson

from ledger.canonical import canonical, loads
from ledger.clock import RECORDED_PATTERN
from ledger.encoding import sha256_hex
from ledger.errors import Malformed
from ledger.keys import Ed25519PublicKey, verify
from ledger.statement import Header, Statement, parse_statement, read_header, signing_input

GENESIS_PREV = "0" * 64
_HASH = re.compile(r"^[0-9a-f]{64}\Z")
_RECORDED = re.compile(RECORDED_PATTERN)
_STATEMENT_KEY = b',"statement":'


class Entry(msgspec.Struct, frozen=True, dict=True):
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

    @cached_property
    def header(self) -> Header:
        """The statement's fields and raw body, decoded but not validated: what folding needs."""
        return read_header(self.statement_bytes)


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
    try:
        canonical_form = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested too deep to write back
        canonical_form = b""
    if canonical_form != data:
        raise Malformed("entry bytes are not canonical JSON")
    seq, prev, recorded_at, sig = (
        document["seq"],
        document["prev"],
        document["recorded_at"],
        document["sig"],
    )
    if not (type(seq) is int and seq >= 1 and _is_text(prev, recorded_at, sig)):
        raise Malformed("entry fields have the wrong types")
    if not in_fixed_format(prev, recorded_at):
        raise Malformed("entry prev or recorded_at is not in its fixed format")
    return Entry(data, seq, prev, recorded_at, sig, statement_slice(data))


def in_fixed_format(prev: str, recorded_at: str) -> bool:
    """Whether an entry's prev and recorded_at are in their fixed formats."""
    return _HASH.match(prev) is not None and _RECORDED.match(recorded_at) is not None


def statement_slice(data: bytes) -> bytes:
    """The statement's bytes within canonical entry bytes. Canonical order puts "statement"
    last and no earlier value can contain its key's byte run, so the first match is the key
    itself: the statement bytes are a verbatim slice."""
    return data[data.index(_STATEMENT_KEY) + len(_STATEMENT_KEY) : -1]


def follow_entry(data: bytes) -> Entry:
    """Decode stored entry bytes for the follower: types only, no canonical or format checks."""
    try:
        stored = _decode_followed(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise Malformed(f"entry: {exc}") from None
    start = data.find(_STATEMENT_KEY) + len(_STATEMENT_KEY)
    entry = Entry(data, stored.seq, stored.prev, stored.recorded_at, stored.sig, data[start:-1])
    # Filled in as the cached properties would be (the follower needs both for every entry),
    # without their per-instance lock.
    entry.__dict__.update(header=stored.statement, hash=hashlib.sha256(data).hexdigest())
    return entry


class _Followed(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    prev: str
    recorded_at: str
    seq: int
    sig: str
    statement: Header


_decode_followed = msgspec.json.Decoder(_Followed).decode


def _is_text(*values: Any) -> bool:
    return all(type(value) is str for value in values)
