"""Where read models live: SQLite beside the ledger file, or the ledger's PostgreSQL schema.

The same SQL runs on both (placeholders are translated), so every projection is written once.
"""

from __future__ import annotations

from pathlib import Path

from ledger.store import Store
from ledger.tables import Cursor, Tables

__all__ = ["SCHEMA", "Cursor", "Database"]

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


class Database(Tables):
    """The projection tables: `<ledger>.projections.db` beside a SQLite ledger (so deleting it
    and restarting rebuilds them), the ledger's own schema on PostgreSQL."""

    def __init__(self, store: Store) -> None:
        path = None if store.is_postgres else Path(store.env["SQLITE_DBNAME"])
        # A document is rewritten whole whenever its case moves on, tens of kilobytes for a long
        # case: in 16 KiB pages that is a quarter of the page writes (and system calls) of 4 KiB.
        projections = path.with_suffix(".projections.db") if path else None
        super().__init__(store, SCHEMA, projections, page_size=16_384)
        # Read models are derived, and each batch commits its rows with its tracking: after a
        # power loss they stand at an earlier batch and catch up from there. So a commit here
        # does not wait for the disk (nor, on SQLite, risk corruption in WAL mode).
        if self.postgres:
            with self.transaction() as cursor:
                cursor.execute("SET synchronous_commit TO off")
        else:
            self._conn.execute("PRAGMA synchronous=NORMAL")
