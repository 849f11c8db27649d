"""Plain SQL tables beside the event store (the Merkle log, the read models): one connection,
the same SQL on SQLite and PostgreSQL (placeholders are translated), transactions that commit
whole or not at all."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

from ledger.files import private_database
from ledger.store import Store, connect, exclusive


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...


class Tables:
    """A set of tables: one connection for writing, used under a lock (their writers are serial
    anyway), and one per reading thread, so readers wait neither for each other nor for a writer.

    On PostgreSQL the tables live in the store's schema; on SQLite in the file `path`
    (default: the event store's own file). `schema` statements may use `{blob}`, and `{rowid}`
    for a 64-bit integer primary key (on SQLite the row id itself, so no separate index).
    `page_size` applies to a SQLite file made here (an existing one keeps its own).
    """

    def __init__(
        self,
        store: Store,
        schema: Sequence[str],
        path: Path | None = None,
        page_size: int | None = None,
    ) -> None:
        self.postgres = store.is_postgres
        self._store = store
        self._path = path or Path(store.env.get("SQLITE_DBNAME", ""))  # not used on PostgreSQL
        self._lock = threading.RLock()
        self._readers: dict[threading.Thread, Any] = {}
        self._readers_lock = threading.Lock()  # not the writer's: a new reader never waits
        if not self.postgres:
            private_database(self._path)
        self._conn: Any = self._connect()
        if self.postgres:
            blob, rowid = "BYTEA", "BIGINT PRIMARY KEY"
        else:
            if page_size is not None:  # before WAL mode, which fixes it
                self._conn.execute(f"PRAGMA page_size={int(page_size)}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            blob, rowid = "BLOB", "INTEGER PRIMARY KEY"
        with exclusive(store, "accord.schema"), self.transaction() as cursor:
            for statement in schema:
                cursor.execute(statement.format(blob=blob, rowid=rowid))

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Cursor]:
        """A transaction: everything in it commits together, or nothing does.

        On SQLite a writing transaction takes the write lock up front (no deadlocking upgrade
        later); a reading one takes none, so readers never wait behind a writer.
        """
        with self._lock:
            # Binary results on PostgreSQL: entry bytes arrive as they are, not hex-escaped.
            cursor = self._conn.cursor(binary=True) if self.postgres else self._conn.cursor()
            if not self.postgres:
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _Translating(cursor, self)
            except BaseException:
                self._conn.rollback()
                raise
            self._conn.commit()

    def _connect(self, reading: bool = False) -> Any:
        if self.postgres:
            return connect(self._store, autocommit=reading)
        return sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=30
        )

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read-only query: one statement, so one consistent snapshot, on the calling
        thread's own connection (in autocommit: no BEGIN and COMMIT round trips)."""
        conn = self._readers.get(threading.current_thread())
        if conn is None:
            conn = self._reader()
        if self.postgres:
            with conn.cursor(binary=True) as cursor:
                cursor.execute(self.sql(statement), params)
                rows: list[Any] = cursor.fetchall()
                return rows
        rows = conn.execute(statement, params).fetchall()
        return rows

    def _reader(self) -> Any:
        """A reading connection for this thread (closing those of threads that have ended)."""
        conn = self._connect(reading=True)
        with self._readers_lock:
            for thread in [t for t in self._readers if not t.is_alive()]:
                self._readers.pop(thread).close()
            self._readers[threading.current_thread()] = conn
        return conn

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers.values():
                conn.close()
            self._readers.clear()
        self._conn.close()


# An event row read plainly: notification id, stream id (32 hex digits), version, topic, state.
EventRow = tuple[int, str, int, str, bytes]


class EventRows:
    """The event store's own table, read as plain rows in notification order: eventsourcing's
    reader makes an event object of each, which takes several times as long."""

    def __init__(self, tables: Tables, table: str, topics: Sequence[str]) -> None:
        self._tables = tables
        self._topics = tuple(topics)
        if tables.postgres:
            key, stream = "notification_id", "replace(originator_id::text, '-', '')"
        else:
            key, stream = "rowid", "originator_id"  # eventsourcing stores UUIDs' hex there
        self.key = key
        marks = ", ".join("?" for _ in self._topics)
        self._sql = (
            f"SELECT {key}, {stream}, originator_version, topic, state FROM {table}"
            f" WHERE {key} > ? AND topic IN ({marks}) ORDER BY {key} LIMIT ?"
        )

    def after(self, after: int, limit: int) -> list[EventRow]:
        """Up to `limit` rows after notification id `after`, in order."""
        return self._tables.query(self._sql, (after, *self._topics, limit))


class _Translating:
    def __init__(self, cursor: Any, tables: Tables) -> None:
        self._cursor = cursor
        self._tables = tables

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(self._tables.sql(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(self._tables.sql(sql), params)

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    def copy(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows: COPY on PostgreSQL (several times faster than INSERTs)."""
        if not rows:
            return
        names = ", ".join(columns)
        if self._tables.postgres:
            with self._cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        # As many rows to a statement as SQLite allows: executemany runs one per row, and the
        # thread writing takes the GIL back after each (waiting a switch interval, at worst).
        width = len(columns)
        for start in range(0, len(rows), PARAMETERS // width):
            chunk = rows[start : start + PARAMETERS // width]
            values = list(chain.from_iterable(chunk))
            self._cursor.execute(insert_sql(f"{table} ({names})", width, len(chunk)), values)


# SQLite's limit on a statement's parameters (since 3.32).
PARAMETERS = 32_766


@functools.lru_cache(maxsize=64)
def insert_sql(into: str, width: int, count: int) -> str:
    """INSERT INTO `into` ("table (columns)") VALUES for `count` rows of `width` parameters."""
    row = "(" + ", ".join("?" * width) + ")"
    return f"INSERT INTO {into} VALUES " + ", ".join([row] * count)


def dashed(hex_id: str) -> str:
    """A UUID stored as 32 hex digits (as eventsourcing keeps them on SQLite), in its usual
    8-4-4-4-12 form."""
    h = hex_id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
