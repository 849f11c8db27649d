"""Evidence bundles: one stream's entries, the directory entries that vouch for their keys, an
inclusion proof for each, and the signed checkpoint they are proved against — everything a
reviewer needs to check the record offline with nothing but the ledger's public key.

Format `accord.bundle.v1` (one JSON document)::

    {"format": "accord.bundle.v1", "origin": ..., "ledger_key": <base64url, informative>,
     "checkpoint": <signed note text>, "stream": <stream id>,
     "entries":   [{"position": p, "entry": {<the entry, verbatim>}, "proof": [<base64>...]}],
     "directory": [ ...the same, for directory entries... ],
     "pending": <entries of the stream recorded after the checkpoint, not included>}

`entries` is the stream from seq 1, complete up to the checkpoint. `directory` holds the
directory's two opening entries (the authority and its key) and, for each person the stream's
entries name in a structured field (author, `for`, and whatever the caller's `names` reads from
a body, never free text) and each key they are signed with: the person's registration, key
bindings and appointments, and the revocation of any of those keys; and the registration of
each organisation `names` gives. Other people and organisations in the directory are not
disclosed. A bundle proves that what it holds is genuine, in the signed
log, and the case from its first entry without a gap; it cannot prove that nothing *after* its
last entry, or no revocation of a key, was left out: that rests on the exporter (a full
`accord verify` of the store, or the event stream, has no such limit).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
import orjson

from ledger import checkpoint as checkpoints
from ledger import merkle
from ledger.canonical import canonical, loads, loads_strict
from ledger.checkpoint import Checkpoint, CheckpointInvalid
from ledger.directory import Directory
from ledger.entry import GENESIS_PREV, Entry, read_entry
from ledger.errors import LedgerError, Malformed
from ledger.keys import Ed25519PublicKey, public_key_b64
from ledger.ledger import Ledger
from ledger.log import Log
from ledger.statement import Header
from ledger.verify import Failure, VerificationFailed, check_entry

FORMAT = "accord.bundle.v1"


class BundleEntry(msgspec.Struct, forbid_unknown_fields=True):
    position: int
    entry: msgspec.Raw
    proof: list[str]


class Bundle(msgspec.Struct, forbid_unknown_fields=True):
    """An evidence bundle as read from its JSON."""

    format: str
    origin: str
    ledger_key: str
    checkpoint: str
    stream: str
    entries: list[BundleEntry]
    directory: list[BundleEntry]
    pending: int = 0


@dataclass(frozen=True)
class BundleReport:
    """What a verified bundle proves."""

    stream: str
    entries: int
    directory_entries: int
    checkpoint: Checkpoint
    pending: int


Names = Callable[[Header], Iterable[str]]


def export(
    ledger: Ledger, log: Log, stream: UUID, ledger_key: Ed25519PublicKey, names: Names
) -> bytes:
    """The evidence bundle of one stream, against the latest signed checkpoint; `names` gives
    the person and organisation ids a stored statement's body names in its structured fields."""
    latest = log.checkpoint()
    if latest is None:
        raise LedgerError("no checkpoint has been signed yet; is the server (sealer) running?")
    included: list[Any] = []
    pending = 0
    named: set[str] = set()
    kids: set[str] = set()
    for entry in ledger.entries(stream):
        position = log.position(entry.hash)
        if position is None or position >= latest.size:
            pending += 1
            continue
        included.append(_item(log, position, entry, latest.size))
        header = entry.header
        named.add(header.by)
        if header.on_behalf_of is not None:
            named.add(header.on_behalf_of)
        named.update(names(header))
        kids.add(header.kid)
    if not included and pending == 0:
        raise LedgerError(f"stream {stream} has no entries")
    directory = []
    for entry in ledger.entries(ledger.directory_id):
        body = loads(entry.statement_bytes)["body"]
        person, key_id = body.get("person"), body.get("kid")
        if person in named and key_id is not None:
            kids.add(key_id)  # a named person's key: its revocation, if any, comes later
        registers = entry.header.kind == "organisation.registered"
        organisation = body.get("organisation") if registers else None
        if entry.seq <= 2 or person in named or key_id in kids or organisation in named:
            position = log.position(entry.hash)
            if position is not None and position < latest.size:
                directory.append(_item(log, position, entry, latest.size))
    document = {
        "format": FORMAT,
        "origin": ledger.origin,
        "ledger_key": public_key_b64(ledger_key),
        "checkpoint": latest.note,
        "stream": str(stream),
        "entries": included,
        "directory": directory,
        "pending": pending,
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


Replay = Callable[[UUID, list[Entry], Directory], None]


def verify_bundle(
    data: bytes, ledger_key: Ed25519PublicKey, replay: Replay | None = None
) -> BundleReport:
    """Check a bundle offline: checkpoint signature, every inclusion proof, the directory's
    vouching, every signature against the key valid at the time, the stream's chain, and (with
    `replay`) the domain rules. Raises `VerificationFailed` naming the first bad entry."""
    try:
        bundle = msgspec.json.decode(data, type=Bundle)
    except msgspec.DecodeError as exc:
        raise Malformed(f"not an evidence bundle: {exc}") from None
    if bundle.format != FORMAT:
        raise Malformed(f"unknown bundle format {bundle.format!r}")
    try:
        signed = checkpoints.parse(bundle.checkpoint, bundle.origin, ledger_key)
    except CheckpointInvalid as exc:
        raise VerificationFailed(Failure(None, "checkpoint", 0, exc.detail)) from None
    directory_entries = [_proved(item, signed) for item in bundle.directory]
    entries = [_proved(item, signed) for item in bundle.entries]
    directory = _directory(directory_entries, bundle)
    authority = directory.keys[directory.authority_kid or ""].public
    stream = UUID(bundle.stream)
    head, last_time = GENESIS_PREV, ""
    for expected_seq, (position, entry) in enumerate(entries, start=1):
        stream_id, seq, prev, recorded_at, problem = check_entry(entry.data, directory, authority)
        if problem is None and UUID(stream_id) != stream:
            problem = "the entry belongs to another stream"
        if problem is None and seq != expected_seq:
            problem = f"expected seq {expected_seq}: the stream is incomplete"
        if problem is None and prev != head:
            problem = f"prev does not match the hash of seq {seq - 1}"
        if problem is None and recorded_at < last_time:
            problem = "recorded_at goes backwards"
        if problem is not None:
            raise VerificationFailed(Failure(position, str(stream), seq, problem))
        head, last_time = entry.hash, recorded_at
    if replay is not None:
        try:
            replay(stream, [entry for _, entry in entries], directory)
        except LedgerError as exc:
            bad = int(getattr(exc, "seq", 0))
            where = entries[bad - 1][0] if 0 < bad <= len(entries) else None
            problem = getattr(exc, "problem", exc.detail)
            raise VerificationFailed(Failure(where, str(stream), bad, problem)) from None
    return BundleReport(str(stream), len(entries), len(directory_entries), signed, bundle.pending)


def _item(log: Log, position: int, entry: Entry, size: int) -> dict[str, Any]:
    proof = [base64.b64encode(node).decode() for node in log.inclusion(position, size)]
    return {"position": position, "entry": orjson.Fragment(entry.data), "proof": proof}


def _proved(item: BundleEntry, signed: Checkpoint) -> tuple[int, Entry]:
    """The entry, once its inclusion in the signed tree is proved."""
    try:
        data = bytes(item.entry)
        # The entry must be exactly its canonical bytes: a parser that keeps the first of two
        # duplicate keys would otherwise read something other than what was signed and proved.
        if canonical(loads_strict(data)) != data:
            raise Malformed("the entry is not in its canonical form")
        entry = read_entry(data)
        path = [base64.b64decode(node, validate=True) for node in item.proof]
    except (LedgerError, ValueError) as exc:
        raise VerificationFailed(Failure(item.position, "?", 0, f"unreadable: {exc}")) from None
    if not merkle.verify_inclusion(
        merkle.leaf_hash(data), item.position, signed.size, path, signed.root
    ):
        raise VerificationFailed(
            Failure(
                item.position,
                entry.statement.stream,
                entry.seq,
                "not included in the signed checkpoint: the entry was altered",
            )
        )
    return item.position, entry


def _directory(entries: list[tuple[int, Entry]], bundle: Bundle) -> Directory:
    """The directory as far as the bundle shows it, its entries checked against the authority."""
    if len(entries) < 2 or [e.seq for _, e in entries[:2]] != [1, 2]:
        raise VerificationFailed(
            Failure(None, "directory", 1, "the bundle lacks the directory's opening entries")
        )
    directory = Directory(UUID(entries[0][1].statement.stream))
    last = 0
    for position, entry in entries:
        if entry.seq <= last:
            raise VerificationFailed(
                Failure(position, str(directory.id), entry.seq, "directory entries out of order")
            )
        last = entry.seq
        try:
            directory.apply_body(entry)
        except (LedgerError, KeyError) as exc:
            raise VerificationFailed(
                Failure(position, str(directory.id), entry.seq, f"does not fold: {exc}")
            ) from None
    # The second entry binds the authority key; every directory entry must be signed with it.
    authority = directory.keys.get(directory.authority_kid or "")
    for position, entry in entries:
        if (
            authority is None
            or entry.statement.kid != authority.kid
            or not entry.signature_valid(authority.public)
        ):
            raise VerificationFailed(
                Failure(
                    position,
                    str(directory.id),
                    entry.seq,
                    "not signed by the authority key: the entry was altered",
                )
            )
    return directory
