"""Real store failures for tests: a trigger that makes the store refuse some inserts with an
error that is not a constraint violation (no mock stands in for the database)."""

from __future__ import annotations

import sqlite3

import psycopg

from ledger.ledger import Ledger
from tests.conftest import PG_DSN

MARKER = "poisoned-by-the-test"
FATAL = "fatal-to-the-connection"


def poison(ledger: Ledger) -> None:
    """From now on, the store fails every insert of an event whose stored state holds
    `MARKER` (so a statement whose text holds it cannot be recorded), and only those."""
    store = ledger.store
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    if store.is_postgres:
        schema = store.env["POSTGRES_SCHEMA"]
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(
                f'CREATE FUNCTION "{schema}".poisoned() RETURNS trigger AS $$ BEGIN'
                f" IF position(convert_to('{MARKER}', 'UTF8') in NEW.state) > 0 THEN"
                " RAISE EXCEPTION 'the store refuses this row'; END IF; RETURN NEW; END $$"
                " LANGUAGE plpgsql"
            )
            conn.execute(
                f'CREATE TRIGGER poisoned BEFORE INSERT ON "{schema}".{table}'
                f' FOR EACH ROW EXECUTE FUNCTION "{schema}".poisoned()'
            )
        return
    with sqlite3.connect(store.env["SQLITE_DBNAME"]) as conn:
        # An integer overflow: a runtime error, not a constraint failure.
        conn.execute(
            f"CREATE TRIGGER poisoned BEFORE INSERT ON {table}"
            f" WHEN instr(NEW.state, CAST('{MARKER}' AS BLOB)) > 0"
            " BEGIN SELECT abs(-9223372036854775807 - 1); END"
        )


def fatal(ledger: Ledger) -> None:
    """From now on (PostgreSQL only), the server ends the very connection that inserts an event
    whose stored state holds `FATAL`, in the middle of its transaction."""
    schema = ledger.store.env["POSTGRES_SCHEMA"]
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(
            f'CREATE FUNCTION "{schema}".fatal() RETURNS trigger AS $$ BEGIN'
            f" IF position(convert_to('{FATAL}', 'UTF8') in NEW.state) > 0 THEN"
            " PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END $$"
            " LANGUAGE plpgsql"
        )
        conn.execute(
            f'CREATE TRIGGER fatal BEFORE INSERT ON "{schema}".{table}'
            f' FOR EACH ROW EXECUTE FUNCTION "{schema}".fatal()'
        )
