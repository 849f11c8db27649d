"""Verification of a whole ledger, trusting nothing but the ledger's public key.

One checking core (`check_log`) reads a log once, in position order, in constant memory (plus
one head per stream): worker processes parse every entry and check its signature against the
key valid when it was recorded (revocations and `compromised_since` included, from the
directory's final state); this process checks every stream's hash chain and the sealed entry
hashes, and rebuilds the Merkle tree, whose root must match every signed checkpoint at its
size (and a trusted one, saved earlier). What it reads comes from a `Source`: `verify_store`
reads the store itself and also checks positions against its notification log; another source
may be a copy of the log read from elsewhere (e.g. through a server's API). The first failure
is named by position, stream and seq.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, NoReturn, Protocol
from uuid import UUID

from ledger import checkpoint as checkpoints
from ledger import merkle
from ledger.checkpoint import Checkpoint, CheckpointInvalid
from ledger.directory import Directory, KeyRecord
from ledger.entry import GENESIS_PREV, read_entry
from ledger.errors import IntegrityViolation, LedgerError
from ledger.keys import Ed25519PublicKey, public_key_b64, public_key_from_b64
from ledger.ledger import Ledger
from ledger.log import Log
from ledger.merkle import leaf_hash

CHUNK = 500  # entries per batch handed to a worker
_PAGE = 2000


@dataclass(frozen=True)
class Failure:
    """The first thing that does not hold, and where."""

    position: int | None
    stream: str
    seq: int
    problem: str

    def __str__(self) -> str:
        # The log, its checkpoints or a bundle's directory as a whole, not one entry:
        if self.stream in ("log", "checkpoint", "directory"):
            at = f" at position {self.position}" if self.position is not None else ""
            return f"{self.stream}{at}: {self.problem}"
        where = f"position {self.position}" if self.position is not None else "unsealed entry"
        return f"{where}, stream {self.stream}, seq {self.seq}: {self.problem}"


class VerificationFailed(LedgerError):
    """The ledger does not verify; `failure` names the first bad entry."""

    code = "verification_failed"

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


@dataclass(frozen=True)
class Report:
    """What was verified."""

    entries: int
    streams: int
    checkpoint: Checkpoint  # the largest signed checkpoint the tree matched
    checkpoints: int  # signed checkpoints matched or waiting for entries (not the trusted one)
    unsealed: int  # entries no signed checkpoint covers yet: checked, but not tamper-evident
    stream_ids: tuple[str, ...]


# What a worker reports of one entry: stream, seq, prev, recorded_at, problem (or None).
Summary = tuple[str, int, str, str, str | None]
Checked = tuple[Summary, str, bytes]  # with the entry hash (hex) and the leaf hash
Read = tuple[int | None, str, bytes]  # position (None: not sealed), sealed hash, entry bytes


class Source(Protocol):
    """A log to verify, as the checking core reads it."""

    @property
    def authority(self) -> Ed25519PublicKey:
        """The authority key every directory entry must be signed with."""
        ...

    def latest(self) -> Checkpoint:
        """The latest signed checkpoint, its signature checked with the ledger key."""
        ...

    def directory(self) -> Directory:
        """The directory's final state, its chain checked (its signatures are checked with
        every other entry)."""
        ...

    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every signed checkpoint the tree must match, by size, each checked."""
        ...

    def batches(self) -> Iterator[list[Read]]:
        """Every entry in position order, then those not sealed yet, in batches of `CHUNK`;
        raises `VerificationFailed` where an entry is missing or out of place."""
        ...


def verify_store(
    ledger: Ledger,
    ledger_key: Ed25519PublicKey,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Verify everything the store holds; raises `VerificationFailed` at the first problem."""
    log = Log(ledger)
    try:
        return check_log(_Store(ledger, log, ledger_key), trusted, workers, progress)
    finally:
        log.close()


def check_log(
    source: Source,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """The checking core: every entry of `source`, on every core; raises `VerificationFailed`
    at the first problem."""
    latest = source.latest()
    if trusted is not None and trusted.size > latest.size:
        fail(
            latest.size,
            "log",
            0,
            f"the trusted checkpoint has {trusted.size} entries, the ledger only"
            f" {latest.size}: the log was truncated",
        )
    directory = source.directory()
    counted = _Counted(source.checkpoints())
    signed = _with_trusted(counted, trusted)
    expected = next(signed, None)
    heads: dict[str, tuple[int, str, str]] = {}
    frontier = merkle.Frontier()
    matched = latest  # the largest signed checkpoint the tree is known to match, at the end
    checked = unpositioned = 0
    while expected is not None and expected.size == 0:
        if expected.root != merkle.EMPTY_ROOT:
            fail(0, "log", 0, "the empty tree's checkpoint has a wrong root")
        expected = next(signed, None)
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(
        workers, initializer=_init, initargs=_keys(directory, source.authority)
    ) as pool:
        for batch, summaries in _ordered(pool, source.batches(), workers * 2):
            for (position, sealed, _), (summary, entry_hash, leaf) in zip(
                batch, summaries, strict=True
            ):
                stream, seq, prev, recorded_at, problem = summary
                if problem is not None:
                    fail(position, stream, seq, problem)
                _chain(heads, position, stream, seq, prev, recorded_at, entry_hash)
                if position is None:
                    unpositioned += 1
                    continue
                if entry_hash != sealed:
                    fail(position, stream, seq, "the entry differs from the one sealed")
                frontier.append(leaf)
                while expected is not None and expected.size == frontier.size:
                    if frontier.root() != expected.root:
                        fail(
                            position,
                            stream,
                            seq,
                            f"the tree of size {expected.size} does not match its signed"
                            " checkpoint: history was rewritten",
                        )
                    if expected.size > matched.size:
                        matched = expected
                    expected = next(signed, None)
            checked += len(batch)
            if progress is not None:
                progress(len(batch))
    if frontier.size < latest.size:
        fail(
            frontier.size,
            "log",
            0,
            f"the signed checkpoint covers {latest.size} entries but the log holds only"
            f" {frontier.size}: entries were removed",
        )
    return Report(
        checked,
        len(heads),
        matched,
        counted.count,
        unpositioned + frontier.size - matched.size,
        tuple(heads),
    )


def check_entry(data: bytes, directory: Directory, authority: Ed25519PublicKey) -> Summary:
    """Parse one stored entry and check its signature and key; never raises."""
    try:
        entry = read_entry(data)
        statement = entry.statement
    except LedgerError as exc:
        return ("", 0, "", "", f"the entry does not parse: {exc.detail}")
    summary = (statement.stream, entry.seq, entry.prev, entry.recorded_at)
    if UUID(statement.stream) == directory.id:
        if statement.kid != directory.authority_kid:
            return (*summary, "directory entries are signed with the authority key")
        public = authority
        problem = None
    else:
        problem = directory.key_problem(statement.kid, statement.by, entry.recorded_at)
        record = directory.keys.get(statement.kid)
        if record is None or record.person != statement.by:
            return (*summary, problem)
        public = record.public
    if not entry.signature_valid(public):
        return (*summary, "the signature does not verify: the entry was altered")
    return (*summary, problem)


def fail(position: int | None, stream: str, seq: int, problem: str) -> NoReturn:
    """Stop verifying: raise `VerificationFailed` naming where and what."""
    raise VerificationFailed(Failure(position, stream, seq, problem))


class _Store:
    """The log as the store holds it: entries in notification order, matched to the positions
    the sealer gave them, and every checkpoint it signed."""

    def __init__(self, ledger: Ledger, log: Log, ledger_key: Ed25519PublicKey) -> None:
        self.ledger, self.log, self.ledger_key = ledger, log, ledger_key

    @property
    def authority(self) -> Ed25519PublicKey:
        return self.ledger.authority_key

    def latest(self) -> Checkpoint:
        latest = self.log.checkpoint()
        if latest is None:
            fail(None, "log", 0, "no checkpoint has been signed")
        return self._parse(latest)

    def _parse(self, stored: Checkpoint) -> Checkpoint:
        try:
            parsed = checkpoints.parse(stored.note, self.ledger.origin, self.ledger_key)
        except CheckpointInvalid as exc:
            fail(stored.size, "log", 0, f"checkpoint of size {stored.size}: {exc.detail}")
        if (parsed.size, parsed.root) != (stored.size, stored.root):
            fail(stored.size, "log", 0, "a stored checkpoint differs from its signed note")
        return parsed

    def checkpoints(self) -> Iterator[Checkpoint]:
        after = -1
        while True:
            rows = self.log.tables.query(
                "SELECT size, root, note FROM log_checkpoints WHERE size > ? ORDER BY size LIMIT ?",
                (after, _PAGE),
            )
            for size, root, note in rows:
                yield self._parse(Checkpoint(self.ledger.origin, int(size), bytes(root), note))
            if len(rows) < _PAGE:
                break
            after = int(rows[-1][0])

    def directory(self) -> Directory:
        try:
            directory = self.ledger.replay(self.ledger.directory_id)
        except IntegrityViolation as exc:
            fail(self._position(exc.stream, exc.seq), exc.stream, exc.seq, exc.problem)
        assert isinstance(directory, Directory)
        return directory

    def batches(self) -> Iterator[list[Read]]:
        """(position or None, sealed hash, entry bytes) in log order, matched to positions."""
        positions = self._positions()
        batch: list[Read] = []
        stopped: VerificationFailed | None = None
        try:
            pending = next(positions, None)
            after = 0
            while True:
                page = self.log.unsealed(after, _PAGE)
                for notification_id, row_stream, row_seq, data in page:
                    if pending is None:
                        batch.append((None, "", data))
                    else:
                        position, nid, stream, seq, sealed = pending
                        if notification_id > nid:
                            fail(position, stream, seq, "the sealed entry is missing")
                        if notification_id < nid:
                            fail(
                                position,
                                row_stream,
                                row_seq,
                                "an entry the sealer never saw is in the log",
                            )
                        batch.append((position, sealed, data))
                        pending = next(positions, None)
                    if len(batch) >= CHUNK:
                        yield batch
                        batch = []
                if len(page) < _PAGE:
                    break
                after = page[-1][0]
            if pending is not None:
                position, _, stream, seq, _ = pending
                fail(position, stream, seq, "the sealed entry is missing")
        except VerificationFailed as exc:
            stopped = exc  # raised once the entries before it are checked: one may be worse
        if batch:
            yield batch
        if stopped is not None:
            raise stopped

    def _positions(self) -> Iterator[tuple[int, int, str, int, str]]:
        after = -1
        while True:
            page = self.log.positions(after, _PAGE)
            for expected, row in enumerate(page, start=after + 1):
                if row[0] != expected:
                    fail(expected, row[2], row[3], "positions are not dense")
                yield row
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    def _position(self, stream: str, seq: int) -> int | None:
        rows = self.log.tables.query(
            "SELECT position FROM log_entries WHERE stream = ? AND seq = ?", (stream, seq)
        )
        return int(rows[0][0]) if rows else None


class _Counted:
    """The source's signed checkpoints, counted as they are read."""

    def __init__(self, signed: Iterator[Checkpoint]) -> None:
        self._signed = signed
        self.count = 0

    def __iter__(self) -> Iterator[Checkpoint]:
        for checkpoint in self._signed:
            self.count += 1
            yield checkpoint


def _with_trusted(signed: _Counted, trusted: Checkpoint | None) -> Iterator[Checkpoint]:
    """The signed checkpoints by size, with the trusted one in its place."""
    for checkpoint in signed:
        if trusted is not None and trusted.size < checkpoint.size:
            yield trusted
            trusted = None
        yield checkpoint
    if trusted is not None:
        yield trusted


def _chain(
    heads: dict[str, tuple[int, str, str]],
    position: int | None,
    stream: str,
    seq: int,
    prev: str,
    recorded_at: str,
    entry_hash: str,
) -> None:
    last_seq, last_hash, last_time = heads.get(stream, (0, GENESIS_PREV, ""))
    if seq != last_seq + 1:
        fail(position, stream, seq, f"expected seq {last_seq + 1} of this stream")
    if prev != last_hash:
        fail(position, stream, seq, f"prev does not match the hash of seq {last_seq}")
    if recorded_at < last_time:
        fail(position, stream, seq, "recorded_at goes backwards")
    heads[stream] = (seq, entry_hash, recorded_at)


def _ordered(
    pool: ProcessPoolExecutor,
    batches: Iterator[list[Read]],
    window: int,
) -> Iterator[tuple[list[Read], list[Checked]]]:
    """Results in submission order, with at most `window` batches in flight (bounded memory).

    A failure the source raises is raised once the batches before it are checked: one of
    them may hold an earlier failure.
    """
    queue: deque[tuple[list[Read], Future[list[Checked]]]] = deque()
    stopped: VerificationFailed | None = None
    try:
        for batch in batches:
            queue.append((batch, pool.submit(_check_batch, [data for _, _, data in batch])))
            if len(queue) >= window:
                done, future = queue.popleft()
                yield done, future.result()
    except VerificationFailed as exc:
        stopped = exc
    while queue:
        done, future = queue.popleft()
        yield done, future.result()
    if stopped is not None:
        raise stopped


# -- worker processes ---------------------------------------------------------------------------

_WORKER: tuple[Directory, Ed25519PublicKey] | None = None

KeyRow = tuple[str, str, str, str, str | None, str | None]


def _keys(directory: Directory, authority: Ed25519PublicKey) -> tuple[Any, ...]:
    rows: list[KeyRow] = [
        (r.kid, r.person, public_key_b64(r.public), r.bound_at, r.revoked_at, r.compromised_since)
        for r in directory.keys.values()
    ]
    return (str(directory.id), directory.authority_kid, public_key_b64(authority), rows)


def _init(directory_id: str, authority_kid: str | None, authority: str, rows: list[KeyRow]) -> None:
    global _WORKER
    directory = Directory(UUID(directory_id))
    directory.authority_kid = authority_kid
    for kid, person, public, bound_at, revoked_at, compromised_since in rows:
        directory.keys[kid] = KeyRecord(
            kid,
            person,
            public_key_from_b64(public),
            bound_at,
            revoked_at=revoked_at,
            compromised_since=compromised_since,
        )
    _WORKER = (directory, public_key_from_b64(authority))


def _check_batch(datas: list[bytes]) -> list[Checked]:
    """Each entry's summary, entry hash and leaf hash (the hashing is spread over the cores)."""
    assert _WORKER is not None
    directory, authority = _WORKER
    return [
        (check_entry(data, directory, authority), sha256(data).hexdigest(), leaf_hash(data))
        for data in datas
    ]
