"""The ledger application: verifies submissions and appends them to hash-chained streams."""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast
from uuid import UUID

from eventsourcing.application import Application, LRUCache
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Recording

from ledger.clock import Clock
from ledger.directory import Directory, directory_id
from ledger.directory_bodies import BODIES as DIRECTORY_BODIES
from ledger.directory_records import KeyRecord
from ledger.entry import Entry, make_entry
from ledger.errors import (
    Busy,
    IntegrityViolation,
    LedgerError,
    Malformed,
    NotPermitted,
    SignatureInvalid,
    StatementConflict,
    Unavailable,
    WrongLedger,
)
from ledger.keys import Ed25519PublicKey, kid
from ledger.receipt import Receipt
from ledger.statement import Submission, parse_submission
from ledger.store import Store, exclusive, parse_store
from ledger.stream import (
    ENTRY_TOPIC,
    EntryMapper,
    EntryRecorded,
    Record,
    StatementClaimed,
    Stream,
    claim_id,
    fold,
    stream_entry,
)

_PAGE = 500
_MAX_ATTEMPTS = 200
_CACHED_STREAMS = 1000
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    """A receipt, and whether this submission created the entry (False: idempotent repeat)."""

    receipt: Receipt
    created: bool
    notification_id: int | None = None  # where the new entry sits in the log; None on a repeat


@dataclass(frozen=True)
class LoggedEntry:
    """An entry as it appears in the ledger-wide notification log."""

    notification_id: int
    stream: UUID
    entry: Entry


class Ledger(Application[UUID]):
    """A signed, multi-author, tamper-evident log of streams, on SQLite or PostgreSQL."""

    name = "Ledger"
    stream_class: type[Stream] = Stream

    def __init__(
        self,
        store: str | Store,
        origin: str,
        authority_key: Ed25519PublicKey,
        clock: Clock | None = None,
    ) -> None:
        self.store = parse_store(store) if isinstance(store, str) else store
        self.origin = origin
        self.authority_key = authority_key
        self.authority_kid = kid(authority_key)
        self.directory_id = directory_id(origin)
        self.clock = clock or Clock()
        self._append_lock = threading.RLock()
        self._states: LRUCache[UUID, Stream] = LRUCache(maxsize=_CACHED_STREAMS)
        self._listeners: list[Callable[[], object]] = []
        self._directory_snapshot: Directory | None = None
        super().__init__(env=self.store.env)

    def construct_mapper(self) -> EntryMapper:
        return EntryMapper()

    def construct_recorder(self) -> ApplicationRecorder:
        with exclusive(self.store, "accord.schema"):
            return super().construct_recorder()

    def on_append(self, callback: Callable[[], object]) -> None:
        """Call `callback` after each append in this process (followers wake on it)."""
        self._listeners.append(callback)

    def appended_elsewhere(self) -> None:
        """Wake this process's followers now: another process has appended."""
        self._notify(())

    def _notify(self, recordings: Sequence[Recording[UUID]]) -> None:
        for callback in self._listeners:
            callback()

    # -- writing -----------------------------------------------------------------------------

    def submit(self, data: bytes) -> Accepted:
        """Verify a submission and append it; raises a `LedgerError` and stores nothing if bad."""
        submission, stream_id = self._parse(data)
        with self._append_lock:
            answer = self._judge(submission, stream_id)
        if isinstance(answer, LedgerError):
            raise answer
        return answer

    def submit_many(self, batch: Sequence[bytes]) -> list[Accepted | LedgerError]:
        """Submit several statements at once, each answered as `submit` would answer it (an
        `Accepted`, or the `LedgerError` it would raise), in the order given.

        Group commit: the ones that pass are appended in one transaction, so concurrent writers
        share one commit and one directory read. A statement the cached states cannot decide (a
        directory statement, a second use of an id, a rule or signature failure, a stream
        another process moved on) is judged alone, exactly as `submit` would, after the
        transaction, which then holds nothing its answer could depend on.

        If the transaction fails in any way, every statement of the batch is judged alone,
        on states read again from the store: none is answered for another's failure.
        """
        answers: list[Accepted | LedgerError | None] = [None] * len(batch)
        parsed: list[tuple[int, Submission, UUID]] = []
        for i, data in enumerate(batch):
            try:
                parsed.append((i, *self._parse(data)))
            except LedgerError as exc:
                answers[i] = exc
        with self._append_lock:
            alone = self._append_together(parsed, answers) if len(parsed) > 1 else parsed
            for i, submission, stream_id in alone:
                answers[i] = self._judge(submission, stream_id)
        assert all(answer is not None for answer in answers)
        return cast(list[Accepted | LedgerError], answers)

    def _parse(self, data: bytes) -> tuple[Submission, UUID]:
        submission = parse_submission(data)
        statement = submission.statement
        if statement.ledger != self.origin:
            raise WrongLedger(f"this ledger is {self.origin!r}, not {statement.ledger!r}")
        stream_id = UUID(statement.stream)
        if stream_id != self.directory_id and stream_id.version not in (4, 7):
            raise Malformed("a stream id must be a random (v4) or time-ordered (v7) UUID")
        return submission, stream_id

    def _append_together(
        self,
        parsed: list[tuple[int, Submission, UUID]],
        answers: list[Accepted | LedgerError | None],
    ) -> list[tuple[int, Submission, UUID]]:
        """Append in one transaction every statement that passes on the cached states; return
        the rest, to be judged alone. Only called under the append lock.

        A statement judged alone is judged after this transaction, so nothing that its answer
        could change may go ahead of it: no later statement of its stream or with its id, and
        nothing after a directory statement (which may bind or revoke the keys of any).
        """
        alone: list[tuple[int, Submission, UUID]] = []
        together: list[tuple[int, str, Entry]] = []
        events: list[EntryRecorded | StatementClaimed] = []
        touched: dict[UUID, Stream] = {}
        ids: set[str] = set()  # statement ids in this transaction, or waiting to be judged alone
        waiting: set[UUID] = set()  # streams with a statement waiting to be judged alone

        def wait(item: tuple[int, Submission, UUID]) -> None:
            alone.append(item)
            ids.add(item[1].statement.id)
            waiting.add(item[2])

        try:
            directory = cast(Directory, self._state(self.directory_id, fresh=True))
            for item in parsed:
                i, submission, stream_id = item
                statement = submission.statement
                if (
                    stream_id == self.directory_id
                    or self.directory_id in waiting
                    or stream_id in waiting
                    or statement.id in ids
                ):
                    wait(item)
                    continue
                try:
                    signer, record = self._signer(submission, directory, stream_id)
                    if not submission.signature_valid(signer):
                        raise SignatureInvalid("the signature does not verify over the statement")
                    stream = touched.get(stream_id) or self._state(stream_id, fresh=False)
                    recorded_at = self.clock.next(directory.recorded_at, after=stream.recorded_at)
                    if record is not None:
                        directory.check_valid(record, recorded_at)
                    self._admit(stream, submission, signer, directory, recorded_at)
                except LedgerError:
                    wait(item)  # the answer (or a repeat's receipt) comes from `_judge`
                    continue
                entry = _next_entry(submission, stream, recorded_at)
                # Later statements of this batch are judged on the stream with this entry in it.
                touched[stream_id] = stream
                stream.apply(entry)
                ids.add(statement.id)
                together.append((i, statement.stream, entry))
                events.append(EntryRecorded(stream_id, entry.seq, entry))
                events.append(
                    StatementClaimed(
                        claim_id(statement.id), 1, statement.stream, entry.seq, entry.hash
                    )
                )
            if not events:
                return alone
            recordings = self.events.put(events)
        except BaseException as exc:
            if isinstance(exc, IntegrityError):
                self._forget(touched)  # these states took this batch's entries: wrong now
                return parsed  # a repeat, or a stream another process moved on: one by one
            # A failure of any other kind may have come while a state was being read, or
            # before the batch's entries were all applied: read every state it named again.
            self._forget([self.directory_id, *(stream_id for _, _, stream_id in parsed)])
            if isinstance(exc, Exception):
                _log.warning("a group commit failed; judging its statements alone", exc_info=True)
                return parsed
            raise
        self._notify(recordings)
        for n, (i, stream_name, entry) in enumerate(together):
            receipt = Receipt(stream_name, entry.seq, entry.hash, entry.recorded_at)
            notification_id = recordings[2 * n].notification.id
            answers[i] = Accepted(receipt, created=True, notification_id=notification_id)
        return alone

    def _judge(self, submission: Submission, stream_id: UUID) -> Accepted | LedgerError:
        """Submit one statement alone: its `Accepted`, or the `LedgerError` that refuses it.

        A failure of any other kind (the store's, or a fault of ours) is answered by what
        really happened to the statement: its receipt if it was recorded after all, otherwise
        `Unavailable`. Only called under the append lock.
        """
        try:
            return self._submit(submission, stream_id)
        except LedgerError as exc:
            return exc
        except Exception as exc:
            _log.warning("recording a statement failed", exc_info=True)
            self._forget([self.directory_id, stream_id])
            return self._outcome(submission, exc)

    def _outcome(self, submission: Submission, failure: Exception) -> Accepted | LedgerError:
        """What happened to a statement whose recording failed with `failure`."""
        try:
            repeat = self._repeat(submission)
        except LedgerError as exc:
            return exc
        except Exception:
            unknown = Unavailable(
                "the store failed while recording this statement, and whether it was recorded"
                " could not be checked; sending it again is safe"
            )
            unknown.__cause__ = failure
            return unknown
        if repeat is not None:
            return Accepted(repeat, created=False)
        refused = Unavailable(
            "the store failed while recording this statement; it was not recorded, and sending"
            " it again is safe"
        )
        refused.__cause__ = failure
        return refused

    def _forget(self, stream_ids: Iterable[UUID]) -> None:
        """Drop cached states, to be read again from the store when next needed."""
        for stream_id in stream_ids:
            with contextlib.suppress(KeyError):  # not cached
                self._states.get(stream_id, evict=True)

    def _submit(self, submission: Submission, stream_id: UUID) -> Accepted:
        statement = submission.statement
        verified = False
        for attempt in range(_MAX_ATTEMPTS):
            fresh = attempt > 0
            # The directory is always brought up to date: a revocation written by another
            # process must be seen. A stream may be stale: its version makes the insert fail.
            directory = cast(Directory, self._state(self.directory_id, fresh=True))
            signer, record = self._signer(submission, directory, stream_id)
            if not verified:
                if not submission.signature_valid(signer):
                    raise SignatureInvalid("the signature does not verify over the statement")
                verified = True
            stream = self._state(stream_id, fresh=fresh)
            # A directory change is strictly later than anything recorded before it here, so
            # no entry shares a millisecond with the revocation or binding that judges it; and
            # within a stream every entry is later than the one before, so "before or after
            # this consent" is a question of time alone.
            recorded_at = self.clock.next(
                directory.recorded_at,
                strictly=stream_id == self.directory_id,
                after=stream.recorded_at,
            )
            try:
                if record is not None:
                    directory.check_valid(record, recorded_at)
                self._admit(stream, submission, signer, directory, recorded_at)
            except LedgerError:
                # A repeat of an accepted statement gets its receipt, whatever has changed since.
                repeat = self._repeat(submission)
                if repeat is not None:
                    return Accepted(repeat, created=False)
                if not fresh:
                    continue  # judged on a cached state: another process may have moved it on
                raise
            entry = _next_entry(submission, stream, recorded_at)
            try:
                # events.put, not save(): save's runtime Protocol checks cost as much as the insert.
                recordings = self.events.put(
                    [
                        EntryRecorded(stream_id, entry.seq, entry),
                        StatementClaimed(
                            claim_id(statement.id), 1, statement.stream, entry.seq, entry.hash
                        ),
                    ]
                )
            except IntegrityError:
                # Either the id was taken (a repeat, or a conflict) or another writer moved the
                # stream: then re-check everything against the new head.
                repeat = self._repeat(submission)
                if repeat is not None:
                    return Accepted(repeat, created=False)
                if attempt > 2:
                    time.sleep(random.uniform(0, 0.002 * min(attempt, 20)))
                continue
            stream.apply(entry)
            self._notify(recordings)
            receipt = Receipt(statement.stream, entry.seq, entry.hash, recorded_at)
            return Accepted(receipt, created=True, notification_id=recordings[0].notification.id)
        raise Busy(f"stream {statement.stream} stayed contended; try again")

    def _signer(
        self, submission: Submission, directory: Directory, stream_id: UUID
    ) -> tuple[Ed25519PublicKey, KeyRecord | None]:
        statement = submission.statement
        if stream_id == self.directory_id:
            # Every directory statement is signed with the configured authority key,
            # so no other key, however it was bound, can register people or bind keys.
            if statement.kid != self.authority_kid:
                raise NotPermitted("directory statements are signed with the authority key")
            return self.authority_key, None
        record = directory.resolve(statement)
        return record.public, record

    def _repeat(self, submission: Submission) -> Receipt | None:
        claims = list(self.events.get(claim_id(submission.statement.id), limit=1))
        if not claims or not isinstance(claims[0], StatementClaimed):
            return None
        claim = claims[0]
        entry = self.entry(UUID(claim.stream), claim.seq)
        if entry.statement_bytes != submission.statement_bytes or entry.sig != submission.sig:
            raise StatementConflict(
                f"statement {submission.statement.id} was already recorded with different content"
            )
        return Receipt(claim.stream, claim.seq, entry.hash, entry.recorded_at)

    def _admit(
        self,
        stream: Stream,
        submission: Submission,
        signer: Ed25519PublicKey,
        directory: Directory,
        recorded_at: str,
    ) -> None:
        """Check the stream's rules; the domain layer extends this for its streams."""
        if isinstance(stream, Directory):
            stream.admit(submission.statement, signer)
        elif submission.statement.kind in DIRECTORY_BODIES:
            raise NotPermitted(f"{submission.statement.kind} belongs in the directory stream")

    def record(self, *records: Record) -> int:
        """Store facts kept beside the streams (never chained); returns the last notification id.

        Raises eventsourcing's `IntegrityError` if a record's version is already taken.
        """
        with self._append_lock:
            recordings = self.events.put(list(records))
        self._notify(recordings)
        return recordings[-1].notification.id

    # -- reading -----------------------------------------------------------------------------

    def directory(self) -> Directory:
        """The directory's current state (empty before it is opened): a snapshot shared by all
        callers until the directory changes, so treat it as read-only."""
        with self._append_lock:
            state = self._state(self.directory_id, fresh=True)
            snapshot = self._directory_snapshot
            if snapshot is None or snapshot.version != state.version:
                snapshot = self._directory_snapshot = cast(Directory, copy.deepcopy(state))
            return snapshot

    def stream(self, stream_id: UUID) -> Stream:
        """A snapshot of a stream's current state; a stream with no entries has version 0."""
        with self._append_lock:
            state = self._state(stream_id, fresh=True)
            return copy.deepcopy(state)

    def _stream_class(self, stream_id: UUID) -> type[Stream]:
        return Directory if stream_id == self.directory_id else self.stream_class

    def _state(self, stream_id: UUID, *, fresh: bool) -> Stream:
        """The cached state of a stream, read up to the store's head when `fresh` or new.

        Only called under the append lock: cached states are mutated in place.
        """
        try:
            state = self._states.get(stream_id)
        except KeyError:
            state = self.replay(stream_id)
            self._states.put(stream_id, state)
            return state
        if fresh:
            try:
                self._fold(state, after=state.version)
            except IntegrityViolation:
                self._states.get(stream_id, evict=True)
                raise
        return state

    def replay(self, stream_id: UUID, upto: int | None = None) -> Stream:
        """A stream's state rebuilt from its stored entries (up to seq `upto`), past the cache."""
        state = self._stream_class(stream_id)(stream_id)
        self._fold(state, upto=upto)
        return state

    def _fold(self, state: Stream, after: int = 0, upto: int | None = None) -> None:
        try:
            fold(state, self.entries(state.id, after=after, upto=upto))
        except IntegrityViolation:
            # A broken chain shows up one entry late; the full check names the altered one.
            self.check_stream(state.id)
            raise

    def entry(self, stream_id: UUID, seq: int) -> Entry:
        """One entry of a stream by its seq."""
        for event in self.events.get(stream_id, gt=seq - 1, lte=seq):
            return stream_entry(event, stream_id)
        raise LookupError(f"stream {stream_id} has no entry {seq}")

    def entries(self, stream_id: UUID, after: int = 0, upto: int | None = None) -> Iterator[Entry]:
        """A stream's entries in seq order (after `after`, up to `upto`), read page by page."""
        while True:
            page = list(self.events.get(stream_id, gt=after, lte=upto, limit=_PAGE))
            for event in page:
                yield stream_entry(event, stream_id)
            if len(page) < _PAGE:
                return
            after = page[-1].originator_version

    def read_log(self, after: int = 0) -> Iterator[LoggedEntry]:
        """Every entry in ledger order (notification id), read page by page."""
        while True:
            page = self.recorder.select_notifications(
                start=after + 1, limit=_PAGE, topics=[ENTRY_TOPIC]
            )
            for notification in page:
                event = cast(EntryRecorded, self.mapper.to_domain_event(notification))
                yield LoggedEntry(notification.id, event.originator_id, event.entry)
            if len(page) < _PAGE:
                return
            after = page[-1].id

    def read_records(self, topics: Sequence[str], after: int = 0) -> Iterator[Record]:
        """Records of the given topics in log order, read page by page."""
        while True:
            page = self.recorder.select_notifications(
                start=after + 1, limit=_PAGE, topics=list(topics)
            )
            for notification in page:
                yield cast(Record, self.mapper.to_domain_event(notification))
            if len(page) < _PAGE:
                return
            after = page[-1].id

    def size(self) -> int:
        """The number of entries in the ledger (counted by reading the log)."""
        return sum(1 for _ in self.read_log())

    def check_stream(self, stream_id: UUID) -> int:
        """Re-check every stored byte of a stream: chain, structure and signatures.

        Returns the number of entries; raises `IntegrityViolation` naming the first bad seq.
        """
        directory = self.directory() if stream_id != self.directory_id else None
        cls = Directory if directory is None else self.stream_class
        state: Stream = cls(stream_id)
        keys = directory or cast(Directory, state)  # the directory checks its own entries
        for entry in self.entries(stream_id):
            fold(state, (entry,))
            problem = keys.entry_problem(entry, self.authority_key, self.authority_kid)
            if problem is not None:
                raise IntegrityViolation(str(stream_id), entry.seq, problem)
        return state.version


def _next_entry(submission: Submission, stream: Stream, recorded_at: str) -> Entry:
    """The entry that would follow the stream's head with this statement."""
    return make_entry(
        submission.statement_bytes, submission.sig, stream.version + 1, stream.head, recorded_at
    )
