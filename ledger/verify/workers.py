"""Verification's worker processes: each reads its streams from the source itself, parses every
entry, checks signatures, chains and the rules as it goes."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import threading
from dataclasses import dataclass
from hashlib import sha256
from itertools import islice
from typing import Any
from uuid import UUID

from ledger.directory import Directory
from ledger.directory_records import KeyRecord, Organisation, Person
from ledger.entry import GENESIS_PREV, Entry
from ledger.entry_reader import read
from ledger.errors import IntegrityViolation, LedgerError
from ledger.keys import Ed25519PublicKey, public_key_from_b64, raw_public_key
from ledger.verify.model import (
    RUN,
    Checked,
    Flaw,
    Opener,
    Rules,
    Streams,
)


@dataclass(frozen=True)
class _Worker:
    directory: Directory
    authority: Ed25519PublicKey
    streams: Streams
    rules: Rules | None


_WORKER: _Worker | None = None

KeyRow = tuple[str, str, bytes, str, str | None, str | None, str | None, str | None]


def pack_directory(directory: Directory) -> tuple[Any, ...]:
    """The directory's state as it pickles (keys by their raw bytes)."""
    keys: list[KeyRow] = [
        (
            r.kid,
            r.person,
            raw_public_key(r.public),
            r.bound_at,
            r.revoked_at,
            r.compromised_since,
            r.reason,
            r.unusable,
        )
        for r in directory.keys.values()
    ]
    head = (directory.version, directory.head, directory.recorded_at)
    return (
        directory.key,
        head,
        directory.persons,
        keys,
        directory.authority,
        directory.authority_kid,
        directory.organisations,
    )


def _unpack(
    key: str,
    head: tuple[int, str, str],
    persons: dict[str, Person],
    keys: list[KeyRow],
    authority: str | None,
    authority_kid: str | None,
    organisations: dict[str, Organisation],
) -> Directory:
    directory = Directory(UUID(key))
    directory.version, directory.head, directory.recorded_at = head
    directory.persons = persons
    directory.organisations = organisations
    for kid, person, raw, bound_at, revoked_at, compromised_since, reason, unusable in keys:
        public = Ed25519PublicKey.from_public_bytes(raw)  # checked when the directory was read
        directory.keys[kid] = KeyRecord(
            kid, person, public, bound_at, revoked_at, compromised_since, reason, unusable
        )
    directory.authority, directory.authority_kid = authority, authority_kid
    return directory


def workers_context() -> multiprocessing.context.BaseContext:
    """Fork workers (they start at once) from a process with no other thread; otherwise start
    them from a fork server. A fork copies only the forking thread: a lock another thread held
    at that moment (inside SQLite opening a file, say) stays held in the child forever."""
    if threading.active_count() == 1 or multiprocessing.get_start_method() != "fork":
        return multiprocessing.get_context()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def init_worker(
    packed: tuple[Any, ...], authority: str, opener: Opener, rules: Rules | None
) -> None:
    global _WORKER
    open_streams, args = opener
    _WORKER = _Worker(_unpack(*packed), public_key_from_b64(authority), open_streams(*args), rules)


def check_streams(streams: list[str]) -> list[Checked]:
    assert _WORKER is not None
    return [_check_stream(_WORKER, stream) for stream in streams]


def _check_stream(worker: _Worker, stream: str) -> Checked:
    """Every entry of one stream, in seq order: parsed, signature and key, chain, rules.

    Entries go a run at a time: parsed, then their signatures checked one after another (the
    signature code and its tables stay in the cache meanwhile: the whole check costs about 4%
    less than parsing and checking entry by entry), then in order, each entry's place in the
    chain and its rules.
    """
    directory, authority = worker.directory, worker.authority
    replay = None
    if worker.rules is not None and stream != directory.key:
        try:
            replay = worker.rules(stream, directory)
        except ValueError:  # not a stream id: its first entry cannot name it either
            replay = None
    count, last_seq, head, last_time = 0, 0, GENESIS_PREV, ""
    refused: Flaw | None = None
    rows = worker.streams.stream(stream)
    while run := list(islice(rows, RUN)):
        entries: list[tuple[int, int, Entry]] = []
        unreadable: Flaw | None = None
        for key, seq, data in run:
            try:
                entry = read(data)
            except LedgerError as exc:
                unreadable = (key, stream, seq, f"the entry does not parse: {exc.detail}")
                break
            entry.__dict__["hash"] = sha256(data).hexdigest()
            entries.append((key, seq, entry))
        problems = _problems([entry for _, _, entry in entries], directory, authority)
        for (key, seq, entry), problem in zip(entries, problems, strict=True):
            count += 1
            statement = entry.statement
            if problem is None:
                if statement.stream != stream or entry.seq != seq:
                    problem = f"the entry is seq {entry.seq} of stream {statement.stream}"
                elif seq != last_seq + 1:
                    problem = f"expected seq {last_seq + 1} of this stream"
                elif entry.prev != head:
                    problem = f"prev does not match the hash of seq {last_seq}"
                elif entry.recorded_at < last_time:
                    problem = "recorded_at goes backwards"
            if problem is not None:
                return stream, count, head, (key, stream, seq, problem), refused
            head, last_seq, last_time = entry.hash, seq, entry.recorded_at
            if replay is not None:
                try:
                    replay(entry)
                except IntegrityViolation as exc:
                    refused = (key, stream, seq, exc.problem)
                    replay = None  # its state is past trusting; the chain is still checked
        if unreadable is not None:
            return stream, count + 1, head, unreadable, refused
    return stream, count, head, None, refused


def _problems(
    entries: list[Entry], directory: Directory, authority: Ed25519PublicKey
) -> list[str | None]:
    """`Directory.entry_problem` of each entry, the signatures checked in one run."""
    kid = directory.authority_kid
    return [directory.entry_problem(entry, authority, kid) for entry in entries]
