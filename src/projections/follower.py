"""The follower: reads the ledger's log in order and keeps every projection up to date.

Each batch of entries is folded into case states, and every projection's rows are written in
one transaction together with that projection's tracking position, so a crash at any moment
leaves each projection exactly at a batch boundary: nothing missed, nothing applied twice.
On SQLite the follower polls, woken at once by appends in the same process; on PostgreSQL it
polls too, and an advisory lock makes sure only one process follows at a time.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, cast
from uuid import UUID

from eventsourcing.application import LRUCache

from ledger.access import READ_TOPIC
from ledger.directory import Directory
from ledger.ledger import Ledger
from ledger.store import connect
from ledger.stream import ENTRY_TOPIC, EntryRecorded, Record, Stream
from projections.database import Database
from projections.documents import Builder
from projections.views import PROJECTIONS, Batch, Projection

_log = logging.getLogger(__name__)
_LOCK_KEY = 0x0ACC0D
# Memory is bounded by this many case states, whatever the ledger's size; a miss replays.
_CACHED_CASES = 32
_TOPICS = [ENTRY_TOPIC, READ_TOPIC]


class Follower:
    """Follows one ledger for a set of projections."""

    def __init__(
        self,
        ledger: Ledger,
        database: Database,
        projections: Sequence[Projection] | None = None,
        batch_size: int = 1000,
    ) -> None:
        self.ledger = ledger
        self.database = database
        self.projections = list(projections if projections is not None else PROJECTIONS)
        self.batch_size = batch_size
        self._states: LRUCache[UUID, Stream] = LRUCache(maxsize=_CACHED_CASES)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader: Any = None
        self._directory: Directory | None = None
        self._listeners: list[Callable[[int], object]] = []
        ledger.on_append(self._wake.set)

    def on_commit(self, callback: Callable[[int], object]) -> None:
        """Call `callback(notification_id)` after each batch commits (in the follower's thread)."""
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
        tracking = self.tracking()
        start = min(nid for nid, _ in tracking.values())
        notifications = self.ledger.recorder.select_notifications(
            start=start + 1, limit=self.batch_size, topics=_TOPICS
        )
        if not notifications:
            return 0
        # Documents name people from the directory; copy it only when it may have changed.
        directory_id = self.ledger.directory_id
        if self._directory is None or any(n.originator_id == directory_id for n in notifications):
            self._directory = self.ledger.directory()
        builder = Builder(self._directory)
        batch = {p.name: Batch(builder, tracking[p.name][1]) for p in self.projections}
        for notification in notifications:
            if notification.topic != ENTRY_TOPIC:
                record = cast(Record, self.ledger.mapper.to_domain_event(notification))
                for projection in self.projections:
                    if notification.id > tracking[projection.name][0]:
                        projection.on_record(batch[projection.name], record, notification.id)
                continue
            event = cast(EntryRecorded, self.ledger.mapper.to_domain_event(notification))
            state = self._state_before(event.originator_id, event.entry.seq)
            state.apply(event.entry)
            for projection in self.projections:
                if notification.id > tracking[projection.name][0]:
                    projection.on_entry(batch[projection.name], state, event.entry)
        last = notifications[-1].id
        with self.database.transaction() as cursor:
            for projection in self.projections:
                if last > tracking[projection.name][0]:
                    work = batch[projection.name]
                    projection.flush(cursor, work)
                    cursor.execute(
                        "INSERT INTO projection_tracking (name, notification_id, position)"
                        " VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                        " notification_id = excluded.notification_id,"
                        " position = excluded.position",
                        (projection.name, last, work.position),
                    )
        for callback in self._listeners:
            callback(last)
        return len(notifications)

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply batches until the log is exhausted; returns how many entries were applied."""
        total = 0
        while count := self.run_once():
            total += count
            if progress is not None:
                progress(count)
        return total

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Drop these projections' rows and tracking, then apply the whole log again."""
        with self.database.transaction() as cursor:
            for projection in self.projections:
                projection.drop(cursor)
                cursor.execute("DELETE FROM projection_tracking WHERE name = ?", (projection.name,))
        self._states = LRUCache(maxsize=_CACHED_CASES)
        return self.catch_up(progress)

    def _state_before(self, stream: UUID, seq: int) -> Stream:
        try:
            state = self._states.get(stream)
        except KeyError:
            state = None
        if state is None or state.version != seq - 1:
            state = self.ledger.replay(stream, upto=seq - 1)
            self._states.put(stream, state)
        return state

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
        while not self._stop.is_set() and not self.try_lead():
            self._stop.wait(1.0)
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                applied = self.run_once()
            except Exception:
                # A batch either committed whole or not at all: log, back off, try again.
                failures += 1
                _log.exception("projection batch failed (attempt %d); retrying", failures)
                self._stop.wait(min(30.0, 0.1 * 2**failures))
                continue
            failures = 0
            if not applied:
                self._wake.wait(poll)

    def try_lead(self) -> bool:
        """Take the follower lock (advisory on PostgreSQL, a file lock on SQLite) if free."""
        store = self.ledger.store
        if store.is_postgres:
            conn = connect(store, autocommit=True)
            schema = store.env.get("POSTGRES_SCHEMA", "public")
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_KEY, schema)
            ).fetchone()
            if row is None or not row[0]:
                conn.close()
                return False
            self._leader = conn  # the lock lives as long as this session
            return True
        handle: IO[bytes] = Path(f"{store.env['SQLITE_DBNAME']}.follower.lock").open("ab")  # noqa: SIM115 (held while leading)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._leader = handle
        return True

    @property
    def leading(self) -> bool:
        """Whether this process holds the follower lock."""
        return self._leader is not None

    def resign(self) -> None:
        """Let go of the follower lock, so another process can lead."""
        if self._leader is not None:
            self._leader.close()
            self._leader = None
