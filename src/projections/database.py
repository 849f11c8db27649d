"""Where read models live: SQLite beside the ledger file, or the ledger's PostgreSQL schema.

The same SQL runs on both (placeholders are translated), so every projection is written once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ledger.store import Store, connect, exclusive

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS projection_tracking ("
    " name TEXT PRIMARY KEY, notification_id BIGINT NOT NULL, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_plans (case_id TEXT PRIMARY KEY, doc {blob} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_registers ("
    " case_id TEXT PRIMARY KEY, doc {blob} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_traces (case_id TEXT NOT NULL,"
    " decision_id TEXT NOT NULL, doc {blob} NOT NULL, PRIMARY KEY (case_id, decision_id))",
    "CREATE TABLE IF NOT EXISTS projection_audit (position BIGINT PRIMARY KEY,"
    " case_id TEXT NOT NULL, seq BIGINT NOT NULL, author TEXT NOT NULL, hash TEXT NOT NULL,"
    " doc {blob} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS projection_audit_case ON projection_audit (case_id, seq)",
    "CREATE INDEX IF NOT EXISTS projection_audit_author ON projection_audit (author, position)",
    "CREATE INDEX IF NOT EXISTS projection_audit_hash ON projection_audit (hash)",
    "CREATE TABLE IF NOT EXISTS projection_access (position BIGINT PRIMARY KEY,"
    " case_id TEXT NOT NULL, person TEXT NOT NULL, doc {blob} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS projection_access_case ON projection_access (case_id, position)",
)


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database:
    """One connection to the projection tables, used under a lock (writes are serial anyway)."""

    def __init__(self, store: Store) -> None:
        self.postgres = store.is_postgres
        self._lock = threading.RLock()
        self._conn: Any
        if self.postgres:
            self._conn = connect(store)
            blob = "BYTEA"
        else:
            path = Path(store.env["SQLITE_DBNAME"])
            self._conn = sqlite3.connect(
                path.with_suffix(".projections.db"),
                isolation_level=None,
                check_same_thread=False,
                timeout=30,
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            blob = "BLOB"
        with exclusive(store, "accord.schema"), self.transaction() as cursor:
            for statement in SCHEMA:
                cursor.execute(statement.format(blob=blob))

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Cursor]:
        """A transaction: everything in it commits together, or nothing does.

        On SQLite a writing transaction takes the write lock up front (no deadlocking upgrade
        later); a reading one takes none, so readers never wait behind the follower.
        """
        with self._lock:
            cursor = self._conn.cursor()
            if not self.postgres:
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _Translating(cursor, self)
            except BaseException:
                self._conn.rollback()
                raise
            self._conn.commit()

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read-only query."""
        with self.transaction(write=False) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()

    def close(self) -> None:
        self._conn.close()


class _Translating:
    def __init__(self, cursor: Any, database: Database) -> None:
        self._cursor = cursor
        self._database = database

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(self._database.sql(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(self._database.sql(sql), params)

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())
