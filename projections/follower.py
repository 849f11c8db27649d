"""The follower: reads the ledger's log in order and keeps every projection up to date.

Each batch of entries is folded into case states, and every projection's rows are written in
one transaction together with that projection's tracking position, so a crash at any moment
leaves each projection exactly at a batch boundary: nothing missed, nothing applied twice.
On SQLite the follower polls, woken at once by appends in the same process; on PostgreSQL it
polls too, and an advisory lock makes sure only one process follows at a time.

Following live takes small batches through eventsourcing's notification log. Catching up and
rebuilding read the event table directly, in larger batches, and hand each batch's writes to a
thread of their own, which writes one batch while the next is folded.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.access import READ_TOPIC
from ledger.directory import Directory
from ledger.entry import follow_entry
from ledger.errors import IntegrityViolation, Malformed
from ledger.leader import Leadership, Progress, lead_and_follow
from ledger.ledger import Ledger
from ledger.stream import ENTRY_TOPIC, Record, Stream
from ledger.tables import EventRow, EventRows, Tables, insert_sql
from projections.database import Cursor, Database
from projections.documents import Builder
from projections.views import PROJECTIONS, Batch, Projection

_log = logging.getLogger(__name__)
_KEY = 0x0ACC0E  # a batch's transaction on PostgreSQL (see _Writes._expect)
# Memory is bounded by this many case states, whatever the ledger's size; a miss replays.
_CACHED_CASES = 32
# Notifications read per query. A rebuild's batches are larger, so that each case's documents
# are built and written about once; two batches' writes are in memory at a time, at most.
_PAGE = 1000
_REBUILD_BATCH = 5_000
_TOPICS = [ENTRY_TOPIC, READ_TOPIC]


class Follower:
    """Follows one ledger for a set of projections."""

    def __init__(
        self,
        ledger: Ledger,
        database: Database,
        projections: Sequence[Projection] | None = None,
        batch_size: int = 1000,
        cached_cases: int = _CACHED_CASES,
    ) -> None:
        self.ledger = ledger
        self.database = database
        self.projections = list(projections if projections is not None else PROJECTIONS)
        self.batch_size = batch_size
        # A server following many busy cases at once keeps more of them than a rebuild needs
        # (which meets them one after another): a miss replays the case from the store.
        self.cached_cases = cached_cases
        # Keyed by the stream id's 32 hex digits; least recently used first.
        self._states: dict[str, Stream] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leadership = Leadership(ledger.store, "follower")
        self._directory: Directory | None = None
        self._listeners: list[Callable[[int], object]] = []
        # Where the projections are, and whether they can advance (see `health`).
        self.progress = Progress("projections", self.caught_up_to)
        ledger.on_append(self._wake.set)

    def on_commit(self, callback: Callable[[int], object]) -> None:
        """Call `callback(notification_id)` after each batch commits (in the thread writing it)."""
        self._listeners.append(callback)

    # -- progress -----------------------------------------------------------------------------

    def tracking(self) -> dict[str, tuple[int, int]]:
        """Per projection: the last notification id applied and the number of entries seen."""
        rows = self.database.query(
            "SELECT name, notification_id, position FROM projection_tracking"
        )
        known = {name: (int(nid), int(position)) for name, nid, position in rows}
        return {p.name: known.get(p.name, (0, 0)) for p in self.projections}

    def caught_up_to(self) -> int:
        """The notification id every projection has applied."""
        return min(nid for nid, _ in self.tracking().values())

    def wait_for(self, notification_id: int, timeout: float = 5.0) -> bool:
        """Read-your-writes: wait (bounded) until every projection has applied that id."""
        deadline = time.monotonic() + timeout
        while self.caught_up_to() < notification_id:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    # -- following ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """Apply the next batch of entries; returns how many notifications it read."""
        prepared = self._prepare(self.tracking(), self.batch_size, self._notifications, self._read)
        if prepared is None:
            return 0
        try:
            with self.database.transaction() as cursor:
                prepared.writes.replay(cursor)
        except _Moved:
            return 0  # written by another follower meanwhile: the next batch starts from there
        self._committed(prepared.last)
        return prepared.count

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply batches until the log is exhausted; returns how many entries were applied."""
        return self._catch_up(self.batch_size, progress)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Drop these projections' rows and tracking, then apply the whole log again."""
        with self.database.transaction() as cursor:
            for projection in self.projections:
                projection.drop(cursor)
                cursor.execute("DELETE FROM projection_tracking WHERE name = ?", (projection.name,))
        self._states.clear()
        # A rebuild makes no reference cycles, and keeps many objects alive at once (the cached
        # cases): the cyclic collector would walk them over and over, for nothing. It is paused
        # for the rebuild (an offline job: `accord rebuild`) and collects at the end.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._catch_up(max(self.batch_size, _REBUILD_BATCH), progress)
        finally:
            if collecting:
                gc.enable()
            with self.database.transaction() as cursor:
                for projection in self.projections:
                    projection.rebuilt(cursor)

    def _catch_up(self, limit: int, progress: Callable[[int], None] | None) -> int:
        """Batches until the log is exhausted, each one written while the next is folded."""
        total = 0
        tables = Tables(self.ledger.store, ())  # the event store's own file or schema
        table = self.ledger.recorder.events_table_name  # type: ignore[attr-defined]
        log = EventRows(tables, table, _TOPICS)
        try:
            while True:
                writer = _Writer(self.database, self._committed)
                try:
                    tracking = self.tracking()
                    while prepared := self._prepare(tracking, limit, log.after, writer.read):
                        tracking, count = prepared.tracking, prepared.count
                        writer.submit(prepared)
                        del prepared  # the writer's now: freed once written, not kept longer
                        if progress is not None:
                            progress(count)
                    writer.close()
                    return total + writer.written
                except _Moved:
                    # Another follower wrote meanwhile: go on from where it left the tracking.
                    writer.close(failed=True)
                    total += writer.written
                except BaseException:
                    writer.close(failed=True)
                    raise
        finally:
            tables.close()

    def _prepare(
        self,
        tracking: dict[str, tuple[int, int]],
        limit: int,
        rows: Callable[[int, int], Sequence[EventRow]],
        read: Callable[[str, Sequence[Any]], list[Any]],
    ) -> _Prepared | None:
        """Fold up to `limit` notifications after `tracking` (`rows(after, limit)` reads them)
        and prepare the batch's writes (`read` answers the projections' queries, on what the
        batches before this one wrote)."""
        after = min(nid for nid, _ in tracking.values())
        batch: dict[str, Batch] = {}
        touched: dict[str, Stream] = {}
        count = 0
        # Cases touched by a batch stay in memory until it is written: stop early at the
        # cache's size, so a batch never holds more case states than the cache would.
        while count < limit and len(touched) < self.cached_cases:
            page = rows(after, min(limit - count, _PAGE))
            if not page:
                break
            count += len(page)
            after = page[-1][0]
            self._fold(page, tracking, batch, touched)
        if not count:
            return None
        writes = _Writes(read, self.database.postgres, tracking)
        done = dict(tracking)
        for projection in self.projections:
            if after > tracking[projection.name][0]:
                work = batch[projection.name]
                projection.flush(writes, work)
                done[projection.name] = (after, work.position)
        moved = [(name, nid, position) for name, (nid, position) in done.items()]
        writes.execute(
            insert_sql("projection_tracking (name, notification_id, position)", 3, len(moved))
            + " ON CONFLICT (name) DO UPDATE SET notification_id = excluded.notification_id,"
            " position = excluded.position",
            [value for row in moved for value in row],
        )
        return _Prepared(writes, after, count, done)

    def _notifications(self, after: int, limit: int) -> list[EventRow]:
        """The log through eventsourcing's own reader (the live path: small pages)."""
        return [
            (n.id, _uuid(n.originator_id).hex, n.originator_version, n.topic, n.state)
            for n in self.ledger.recorder.select_notifications(
                start=after + 1, limit=limit, topics=_TOPICS
            )
        ]

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self.database.query(sql, params)

    def _committed(self, last: int) -> None:
        for callback in self._listeners:
            callback(last)

    def _fold(
        self,
        rows: Sequence[EventRow],
        tracking: dict[str, tuple[int, int]],
        batch: dict[str, Batch],
        touched: dict[str, Stream],
    ) -> None:
        """Fold a page of the log into case states and each projection's batch."""
        directory_key = self.ledger.directory_id.hex
        if self._directory is None:
            self._directory = self.ledger.directory()
        if not batch:
            builder = Builder(self._directory)
            batch.update(
                (p.name, Batch(builder, tracking[p.name][1], touched)) for p in self.projections
            )
        # Each projection that notes entries, with its batch; only those still behind this
        # page check ids (after a crash, each projection resumes from its own position).
        first = rows[0][0]
        noting = [p for p in self.projections if type(p).on_entry is not Projection.on_entry]
        current = [(p.on_entry, batch[p.name]) for p in noting if tracking[p.name][0] < first]
        behind = [(p.on_entry, batch[p.name], tracking[p.name][0]) for p in noting]
        if len(current) == len(behind):
            behind = []
        else:
            current = []
        states = self._states
        refreshed = False
        last_key, last_state = "", None
        for nid, key, version, topic, data in rows:
            if topic != ENTRY_TOPIC:
                stored = StoredEvent(UUID(key), version, topic, data)
                record = cast(Record, self.ledger.mapper.to_domain_event(stored))
                for projection in self.projections:
                    if nid > tracking[projection.name][0]:
                        projection.on_record(batch[projection.name], record, nid)
                continue
            if key == directory_key and not refreshed:
                # Documents name people from the directory: copy it (its head, which already
                # holds this page's changes) only when it has changed.
                refreshed = True
                self._directory = self.ledger.directory()
                builder = Builder(self._directory)
                for work in batch.values():
                    work.builder = builder
            try:
                entry = follow_entry(bytes(data))
            except Malformed as exc:
                raise IntegrityViolation(str(UUID(key)), version, exc.detail) from None
            # Entries of one stream tend to come together: the cache is reordered only when
            # the stream changes (or the state is not the one this entry follows).
            state = last_state if key == last_key else None
            if state is None or state.version != entry.seq - 1:
                state = states.pop(key, None)
                if state is None or state.version != entry.seq - 1:
                    state = self.ledger.replay(UUID(key), upto=entry.seq - 1)
                states[key] = state  # most recently used last
                if len(states) > self.cached_cases:
                    del states[next(iter(states))]
                touched[key] = state
                last_key, last_state = key, state
            state.apply(entry)
            for note, work in current:
                note(work, state, entry)
            for note, work, applied in behind:
                if nid > applied:
                    note(work, state, entry)

    # -- running in the background ------------------------------------------------------------

    def start(self, poll: float = 0.25) -> None:
        """Follow in a background thread, once this process holds the follower lock."""
        self._thread = threading.Thread(target=self._run, args=(poll,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.resign()

    def _run(self, poll: float) -> None:
        lead_and_follow(
            self.leadership, self.run_once, self._stop, self._wake, poll, progress=self.progress
        )

    def try_lead(self) -> bool:
        """Take the follower lock (advisory on PostgreSQL, a file lock on SQLite) if free."""
        return self.leadership.try_acquire()

    @property
    def leading(self) -> bool:
        """Whether this process holds the follower lock."""
        return self.leadership.held

    def resign(self) -> None:
        """Let go of the follower lock, so another process can lead."""
        self.leadership.release()


class _Moved(Exception):
    """A batch was not written: its projections had moved on since it was read."""


@dataclass
class _Prepared:
    """A folded batch: its writes, where it ends, and each projection's tracking after it."""

    writes: _Writes
    last: int
    count: int
    tracking: dict[str, tuple[int, int]]


class _Writes:
    """A cursor that keeps a batch's writes, to run in one transaction later; a projection's
    queries (statements starting SELECT) are answered at once, from what is committed."""

    def __init__(
        self,
        read: Callable[[str, Sequence[Any]], list[Any]],
        postgres: bool,
        tracking: dict[str, tuple[int, int]],
    ) -> None:
        self._writes: list[Callable[[Cursor], object]] = []
        self._read = read
        self._postgres = postgres
        self._tracking = {name: nid for name, (nid, _) in tracking.items()}
        self._rows: list[Any] = []

    def _expect(self, cursor: Cursor) -> None:
        # First in the batch's transaction: the projections must still be where the batch was
        # read from. A follower killed mid-commit may still commit after another has read the
        # tracking (on PostgreSQL its session outlives it for a moment); its writes and these
        # would both apply. The lock makes such transactions take turns.
        if self._postgres:
            cursor.execute("SELECT pg_advisory_xact_lock(?, hashtext(current_schema()))", (_KEY,))
        cursor.execute("SELECT name, notification_id FROM projection_tracking")
        stored = {name: int(nid) for name, nid in cursor.fetchall()}
        if any(stored.get(name, 0) != nid for name, nid in self._tracking.items()):
            raise _Moved("the projections were written by another follower")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if sql.startswith("SELECT"):
            self._rows = self._read(sql, params)
        else:
            self._writes.append(lambda cursor: cursor.execute(sql, params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._writes.append(lambda cursor: cursor.executemany(sql, params))

    def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._writes.append(lambda cursor: cursor.copy(table, columns, rows))

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def replay(self, cursor: Cursor) -> None:
        """Run the kept writes, in order, on a cursor in the batch's transaction."""
        self._expect(cursor)
        for write in self._writes:
            write(cursor)


class _Writer:
    """Writes prepared batches in order, one transaction each, on a thread of its own.

    The database does its part of a write (SQLite's page work and commit, PostgreSQL's round
    trips) without holding the GIL, so one batch is written while the next is folded. At most
    one batch waits: the follower prepares the next only once the one before it is written.
    """

    def __init__(self, database: Database, committed: Callable[[int], None]) -> None:
        self._database = database
        self._committed = committed
        self._jobs: queue.Queue[_Prepared | None] = queue.Queue()
        self._error: BaseException | None = None
        self.written = 0  # notifications in the batches committed
        self._thread = threading.Thread(target=self._run, name="projection-writer", daemon=True)
        self._thread.start()

    def submit(self, prepared: _Prepared) -> None:
        """Hand a batch over once the one before it is written (raising if that failed)."""
        self._wait()
        self._jobs.put(prepared)

    def read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """A query, on everything handed over so far: reads wait for the writes before them."""
        self._wait()
        return self._database.query(sql, params)

    def close(self, failed: bool = False) -> None:
        """Finish the batch in hand and stop; raise its error unless already failing."""
        self._jobs.put(None)
        self._thread.join()
        if self._error is not None and not failed:
            raise self._error

    def _wait(self) -> None:
        self._jobs.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (prepared := self._jobs.get()) is not None:
            try:
                if self._error is None:
                    with self._database.transaction() as cursor:
                        prepared.writes.replay(cursor)
                    self.written += prepared.count
                    self._committed(prepared.last)
            except BaseException as exc:  # handed to the follower's thread, which raises it
                self._error = exc
            finally:
                del prepared  # not kept while waiting for the next one
                self._jobs.task_done()
        self._jobs.task_done()


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
