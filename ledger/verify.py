"""Verification of a whole ledger, trusting nothing but the ledger's public key.

One checking core (`check_log`) reads a log in constant memory (plus a little per stream), on
every core, and parses each entry once. First this process folds the directory (its final
state, later revocations and `compromised_since` included, is what every key is judged by);
then:

- it reads the log once, in position order: it checks that every position holds the entry the
  sealer sealed there (for a store, against its notification log: nothing missing, nothing the
  sealer never saw) and rebuilds the Merkle tree, whose root must match every signed
  checkpoint at its size (and a trusted one, saved earlier). Each stream it meets goes to a
  worker process;
- a worker reads its streams from the same source itself, seq by seq: it parses every entry
  (its canonical bytes, its statement in full), checks its signature against the key valid
  when it was recorded and its place in the stream's hash chain, and replays the stream's
  rules as it goes (`rules`, if given; for every stream but the directory);
- at the end, each stream must have ended in the worker where it ended in this process.

What it reads comes from a `Source`: `verify_store` reads the store itself (up to the last
entry there when verification begins); another source may be a copy of the log read from
elsewhere (e.g. through a server's API). The failure named, by position, stream and seq, is
the earliest in the log that the entries, chains, positions or tree show; only if there is
none, the earliest entry the rules refuse (an altered directory entry can make the rules
refuse entries before it: the altered entry is the one to name).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from hashlib import sha256
from itertools import islice
from typing import Any, NoReturn, Protocol
from uuid import UUID

from ledger import checkpoint as checkpoints
from ledger import merkle
from ledger.checkpoint import Checkpoint, CheckpointInvalid
from ledger.directory import Directory
from ledger.directory_records import KeyRecord, Organisation, Person
from ledger.entry import GENESIS_PREV, Entry
from ledger.entry_reader import read
from ledger.errors import IntegrityViolation, LedgerError
from ledger.keys import Ed25519PublicKey, public_key_b64, public_key_from_b64, raw_public_key
from ledger.ledger import Ledger
from ledger.log import Log
from ledger.store import parse_store
from ledger.stream import ENTRY_TOPIC
from ledger.tables import Tables, dashed

PAGE = 2000  # rows read at a time, by this process and by each worker
TASK = 1000  # entries (as far as this process has seen them) of the streams in one task
_TASK_STREAMS = 64  # and at most this many streams
RUN = 128  # entries a worker parses before it checks their signatures together


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


# What `check_entry` reports of one entry: stream, seq, prev, recorded_at, problem (or None).
Summary = tuple[str, int, str, str, str | None]
# A row of the log as this process reads it: position (None: not sealed yet), the entry hash
# sealed there (raw), where the source holds the entry (stream as the source names it, seq),
# the source's own key for the row (growing along the log: a notification id, or the
# position), and the entry bytes.
Row = tuple[int | None, bytes, str, int, int, bytes]
# A row of one stream as a worker reads it: the source's key, seq, entry bytes.
StreamRow = tuple[int, int, bytes]
# What a worker found wrong: the row's key, stream, seq, and the problem.
Flaw = tuple[int, str, int, str]
# A worker's account of one stream: its stream, entries read, the hash of the last one that
# checked out, the first flaw in an entry or the chain (where it stopped), and the first entry
# the rules refuse.
Checked = tuple[str, int, str, Flaw | None, Flaw | None]
# Given a stream (not the directory) and the directory's final state: a step that replays the
# stream's entries one after another against its rules, raising `IntegrityViolation` at the
# first it refuses. It runs in worker processes, so it must pickle (e.g. a module's class).
Rules = Callable[[str, Directory], Callable[[Entry], None]]


class Streams(Protocol):
    """A worker's reader of whole streams."""

    def stream(self, stream: str) -> Iterator[StreamRow]:
        """The stream's rows by seq, a page at a time."""
        ...


# How a worker opens its own `Streams` (it must pickle): a callable and its arguments.
Opener = tuple[Callable[..., Streams], tuple[Any, ...]]


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

    def rows(self) -> Iterator[list[Row]]:
        """Every entry in position order, then those not sealed yet, a page at a time; raises
        `VerificationFailed` where an entry is missing or out of place."""
        ...

    def streams(self) -> Opener:
        """How a worker opens a reader of the same entries, stream by stream."""
        ...

    def name(self, stream: str) -> str:
        """A stream's id, from the name its rows give it."""
        ...

    def position(self, key: int) -> int | None:
        """The position of the row with this key (None: not sealed)."""
        ...


def verify_store(
    ledger: Ledger,
    ledger_key: Ed25519PublicKey,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    rules: Rules | None = None,
) -> Report:
    """Verify everything the store holds; raises `VerificationFailed` at the first problem."""
    log = Log(ledger)
    try:
        return check_log(_Store(ledger, log, ledger_key), trusted, workers, progress, rules)
    finally:
        log.close()


def check_log(
    source: Source,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    rules: Rules | None = None,
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
    while expected is not None and expected.size == 0:
        if expected.root != merkle.EMPTY_ROOT:
            fail(0, "log", 0, "the empty tree's checkpoint has a wrong root")
        expected = next(signed, None)
    workers = workers or os.cpu_count() or 1
    pool = ProcessPoolExecutor(
        workers,
        mp_context=_workers_context(),
        initializer=_init,
        initargs=(_pack(directory), public_key_b64(source.authority), source.streams(), rules),
    )
    try:
        tasks = _Tasks(pool, progress)
        # Per stream as the source names it: [entries, hash of the last, its id] (`_Tasks`
        # adds what its worker says).
        heads: dict[str, list[Any]] = {}
        tree = merkle.Frontier()
        leaves: list[bytes] = []  # hashed, added to the tree a run at a time (`extend`)
        matched = latest  # the largest signed checkpoint the tree is known to match, at the end
        checked = unpositioned = 0
        stopped: Failure | None = None
        whole = False  # whether every row was read
        try:
            for page in source.rows():
                for position, sealed, stream, seq, _, data in page:
                    checked += 1
                    entry_hash = sha256(data).digest()
                    head = heads.get(stream)
                    if head is None:
                        head = heads[stream] = [1, entry_hash, source.name(stream)]
                        tasks.meet(head)
                    else:
                        head[0] += 1
                        head[1] = entry_hash
                    if position is None:
                        unpositioned += 1
                        continue
                    if entry_hash != sealed:
                        fail(position, head[2], seq, "the entry differs from the one sealed")
                    leaves.append(merkle.leaf_hash(data))
                    if expected is None or tree.size + len(leaves) != expected.size:
                        continue
                    tree.extend(leaves)
                    leaves.clear()
                    while expected is not None and expected.size == tree.size:
                        if tree.root() != expected.root:
                            fail(
                                position,
                                head[2],
                                seq,
                                f"the tree of size {expected.size} does not match its signed"
                                " checkpoint: history was rewritten",
                            )
                        if expected.size > matched.size:
                            matched = expected
                        expected = next(signed, None)
                tree.extend(leaves)
                leaves.clear()
                tasks.dispatch()
                if page and tasks.flawed_before(page[-1][4]):
                    break  # a worker found an entry that comes before anything still unread
            else:
                whole = True
        except VerificationFailed as exc:
            stopped = exc.failure  # named once the entries before it are checked
            tasks.quiet = True
        tasks.dispatch()
        if whole and tree.size < latest.size:
            stopped = Failure(
                tree.size,
                "log",
                0,
                f"the signed checkpoint covers {latest.size} entries but the log holds only"
                f" {tree.size}: entries were removed",
            )
            tasks.quiet = True
        tasks.finish(heads.values() if whole and stopped is None else None)
    finally:
        pool.shutdown(cancel_futures=True)
    first = _first(source, tasks.flaws)
    if first is not None and (stopped is None or _before(first, stopped)):
        stopped = first
    stopped = stopped or _first(source, tasks.refused)
    if stopped is not None:
        raise VerificationFailed(stopped)
    return Report(
        checked,
        len(heads),
        matched,
        counted.count,
        unpositioned + tree.size - matched.size,
        tuple(head[2] for head in heads.values()),
    )


def check_entry(data: bytes, directory: Directory, authority: Ed25519PublicKey) -> Summary:
    """Parse one stored entry and check its signature and key; never raises."""
    try:
        entry = read(data)
    except LedgerError as exc:
        return ("", 0, "", "", f"the entry does not parse: {exc.detail}")
    statement = entry.statement
    problem = directory.entry_problem(entry, authority, directory.authority_kid)
    return (statement.stream, entry.seq, entry.prev, entry.recorded_at, problem)


def fail(position: int | None, stream: str, seq: int, problem: str) -> NoReturn:
    """Stop verifying: raise `VerificationFailed` naming where and what."""
    raise VerificationFailed(Failure(position, stream, seq, problem))


class _Store:
    """The log as the store holds it: entries in notification order, matched to the positions
    the sealer gave them, and every checkpoint it signed; up to the last entry stored when it
    is first read (entries appended meanwhile are left to the next verification)."""

    def __init__(self, ledger: Ledger, log: Log, ledger_key: Ed25519PublicKey) -> None:
        self.ledger, self.log, self.ledger_key = ledger, log, ledger_key
        self._last: int | None = None

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
                (after, PAGE),
            )
            for size, root, note in rows:
                yield self._parse(Checkpoint(self.ledger.origin, int(size), bytes(root), note))
            if len(rows) < PAGE:
                break
            after = int(rows[-1][0])

    def directory(self) -> Directory:
        try:
            directory = self.ledger.replay(self.ledger.directory_id)
        except IntegrityViolation as exc:
            fail(self._position(exc.stream, exc.seq), exc.stream, exc.seq, exc.problem)
        assert isinstance(directory, Directory)
        return directory

    @property
    def last(self) -> int:
        """The last notification id when verification began: nothing after it is read."""
        if self._last is None:
            self._last = int(self.ledger.recorder.max_notification_id() or 0)
        return self._last

    def streams(self) -> Opener:
        return (StoreStreams, (self.ledger.store.url, self._table, self.last))

    def name(self, stream: str) -> str:
        return stream if self.log.tables.postgres else dashed(stream)

    def position(self, key: int) -> int | None:
        rows = self.log.tables.query(
            "SELECT position FROM log_entries WHERE notification_id = ?", (key,)
        )
        return int(rows[0][0]) if rows else None

    def rows(self) -> Iterator[list[Row]]:
        """Rows in log order, matched to positions: the notification id is each row's key."""
        last = self.last
        positions = self._positions(last)
        batch: list[Row] = []
        stopped: VerificationFailed | None = None
        try:
            pending = next(positions, None)
            for page in self._events(last):
                for notification_id, stream, seq, data in page:
                    if pending is None:
                        batch.append((None, b"", stream, seq, notification_id, data))
                        continue
                    position, nid, sealed = pending
                    if notification_id != nid:
                        if notification_id > nid:
                            self._fail_at(position, "the sealed entry is missing")
                        fail(
                            position,
                            self.name(stream),
                            seq,
                            "an entry the sealer never saw is in the log",
                        )
                    batch.append((position, sealed, stream, seq, notification_id, data))
                    pending = next(positions, None)
                yield batch
                batch = []
            if pending is not None:
                self._fail_at(pending[0], "the sealed entry is missing")
        except VerificationFailed as exc:
            stopped = exc  # raised once the entries before it are checked: one may be worse
        if batch:
            yield batch
        if stopped is not None:
            raise stopped

    @property
    def _table(self) -> str:
        table: str = self.ledger.recorder.events_table_name  # type: ignore[attr-defined]
        return table

    def _events(self, last: int) -> Iterator[list[tuple[int, str, int, bytes]]]:
        """(notification id, stream as stored, seq, entry bytes) up to `last`, in pages."""
        if self.log.tables.postgres:
            key, stream = "notification_id", "originator_id::text"
        else:
            key, stream = "rowid", "originator_id"  # eventsourcing stores UUIDs' hex there
        sql = (
            f"SELECT {key}, {stream}, originator_version, state FROM {self._table}"
            f" WHERE {key} > ? AND {key} <= ? AND topic = ? ORDER BY {key} LIMIT ?"
        )
        after = 0
        while True:
            page = self.log.tables.query(sql, (after, last, ENTRY_TOPIC, PAGE))
            if page:
                yield page
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def _positions(self, last: int) -> Iterator[tuple[int, int, bytes]]:
        """(position, notification id, sealed entry hash) up to the notification `last`."""
        after = -1
        while True:
            page = self.log.tables.query(
                "SELECT position, notification_id, hash FROM log_entries WHERE position > ?"
                " ORDER BY position LIMIT ?",
                (after, PAGE),
            )
            for expected, row in enumerate(page, start=after + 1):
                if row[1] > last:
                    return  # sealed after verification began
                if row[0] != expected:
                    self._fail_at(row[0], "positions are not dense", expected)
                yield row
            if len(page) < PAGE:
                return
            after = page[-1][0]

    def _fail_at(self, position: int, problem: str, named: int | None = None) -> NoReturn:
        """Fail at a position, naming the stream and seq sealed at `position`."""
        stream, seq = self.log.tables.query(
            "SELECT stream, seq FROM log_entries WHERE position = ?", (position,)
        )[0]
        fail(position if named is None else named, stream, int(seq), problem)

    def _position(self, stream: str, seq: int) -> int | None:
        rows = self.log.tables.query(
            "SELECT position FROM log_entries WHERE stream = ? AND seq = ?", (stream, seq)
        )
        return int(rows[0][0]) if rows else None


class StoreStreams:
    """A worker's reader of whole streams from the store's event table, up to notification
    id `last`; each row's key is its notification id."""

    def __init__(self, url: str, table: str, last: int) -> None:
        store = parse_store(url)
        self._tables = Tables(store, ())
        self._postgres = store.is_postgres
        key = "notification_id" if self._postgres else "rowid"
        self._sql = (
            f"SELECT {key}, originator_version, state FROM {table} WHERE originator_id = ?"
            f" AND originator_version > ? AND {key} <= ? AND topic = ?"
            " ORDER BY originator_version LIMIT ?"
        )
        self._last = last

    def stream(self, stream: str) -> Iterator[StreamRow]:
        # Stored as a UUID on PostgreSQL, as its 32 hex digits on SQLite.
        stored: Any = UUID(stream) if self._postgres else stream.replace("-", "")
        after = 0
        while True:
            page = self._tables.query(self._sql, (stored, after, self._last, ENTRY_TOPIC, PAGE))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1][1]


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


class _Tasks:
    """Streams handed to the workers as this process meets them, a few to a task, and what
    the workers found. What a worker says of a stream is kept in its head (as a fourth item:
    its entries and the hash of its last, or None where it found a flaw), the task let go."""

    def __init__(self, pool: ProcessPoolExecutor, progress: Callable[[int], None] | None) -> None:
        self._pool = pool
        self._progress = progress
        self._met: list[list[Any]] = []  # heads of streams met since the last dispatch
        self._tasks: deque[tuple[Future[list[Checked]], list[list[Any]]]] = deque()
        self._flagged: list[int] = []  # keys of flaws found so far (appended by another thread)
        self.flaws: list[Flaw] = []
        self.refused: list[Flaw] = []
        self.quiet = False  # once a failure is known, progress stops

    def meet(self, head: list[Any]) -> None:
        """A stream seen for the first time (its head, as this process keeps it)."""
        self._met.append(head)

    def dispatch(self) -> None:
        """Hand the streams met so far to the workers; take in the tasks done."""
        task: list[list[Any]] = []
        size = 0
        for head in self._met:
            task.append(head)
            size += head[0]
            if size >= TASK or len(task) >= _TASK_STREAMS:
                self._submit(task)
                task, size = [], 0
        if task:
            self._submit(task)
        self._met = []
        while self._tasks and self._tasks[0][0].done():
            self._take(*self._tasks.popleft())

    def _submit(self, heads: list[list[Any]]) -> None:
        future = self._pool.submit(_check_streams, [head[2] for head in heads])
        future.add_done_callback(self._noted)
        self._tasks.append((future, heads))

    def _noted(self, future: Future[list[Checked]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self._flagged.extend(flaw[0] for *_, flaw, _ in future.result() if flaw is not None)

    def flawed_before(self, key: int) -> bool:
        """Whether a worker has found a flaw at or before the row with this key."""
        return bool(self._flagged) and min(self._flagged) <= key

    def _take(self, future: Future[list[Checked]], heads: list[list[Any]]) -> None:
        entries = 0
        for (_, count, last, flaw, refused), head in zip(future.result(), heads, strict=True):
            entries += count
            head.append(None if flaw is not None else (count, last))
            if flaw is not None:
                self.flaws.append(flaw)
                self.quiet = True
            if refused is not None:
                self.refused.append(refused)
                self.quiet = True
        if self._progress is not None and not self.quiet:
            self._progress(entries)

    def finish(self, heads: Iterable[list[Any]] | None) -> None:
        """Wait for every task. With the heads of a whole pass, each stream must have ended
        in its worker where it ended in this process."""
        while self._tasks:
            self._take(*self._tasks.popleft())
        for count, last, stream, worker in heads or ():
            if worker is not None and worker != (count, last.hex()):
                self.flaws.append((-1, stream, count, "the stream changed while it was verified"))


def _first(source: Source, flaws: list[Flaw]) -> Failure | None:
    """The flaw that comes first in the log, named by its position."""
    if not flaws:
        return None
    key, stream, seq, problem = min(flaws, key=lambda flaw: (flaw[0] < 0, flaw[0]))
    if key < 0:
        return Failure(None, "log", 0, f"stream {stream}: {problem}")
    return Failure(source.position(key), stream, seq, problem)


def _before(flaw: Failure, failure: Failure) -> bool:
    """Whether an entry's flaw comes before this process's failure (at one position, the
    flaw in the entry itself is named)."""
    if flaw.position is None or flaw.stream == "log":
        return False
    return failure.position is None or flaw.position <= failure.position


# -- worker processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Worker:
    directory: Directory
    authority: Ed25519PublicKey
    streams: Streams
    rules: Rules | None


_WORKER: _Worker | None = None

KeyRow = tuple[str, str, bytes, str, str | None, str | None, str | None, str | None]


def _pack(directory: Directory) -> tuple[Any, ...]:
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


def _workers_context() -> multiprocessing.context.BaseContext:
    """Fork workers (they start at once) from a process with no other thread; otherwise start
    them from a fork server. A fork copies only the forking thread: a lock another thread held
    at that moment (inside SQLite opening a file, say) stays held in the child forever."""
    if threading.active_count() == 1 or multiprocessing.get_start_method() != "fork":
        return multiprocessing.get_context()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _init(packed: tuple[Any, ...], authority: str, opener: Opener, rules: Rules | None) -> None:
    global _WORKER
    open_streams, args = opener
    _WORKER = _Worker(_unpack(*packed), public_key_from_b64(authority), open_streams(*args), rules)


def _check_streams(streams: list[str]) -> list[Checked]:
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
