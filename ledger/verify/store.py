"""Verification's source for a store: the log and every stream read straight from the store's
tables, up to the last entry there when verification begins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn
from uuid import UUID

from ledger import checkpoint as checkpoints
from ledger.checkpoint import Checkpoint, CheckpointInvalid
from ledger.directory import Directory
from ledger.errors import IntegrityViolation
from ledger.keys import Ed25519PublicKey
from ledger.ledger import Ledger
from ledger.log import Log
from ledger.store import parse_store
from ledger.stream import ENTRY_TOPIC
from ledger.tables import Tables, dashed
from ledger.verify.model import (
    PAGE,
    Opener,
    Row,
    StreamRow,
    VerificationFailed,
    fail,
)


class StoreSource:
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
