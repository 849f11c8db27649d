"""Plain tables beside the event store: reads run on each thread's own connection, so they
neither queue behind a writer's open transaction nor see what it has not committed."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from ledger.store import parse_store
from ledger.tables import Tables
from tests.conftest import PG_DSN

SCHEMA = ("CREATE TABLE IF NOT EXISTS notes (id BIGINT PRIMARY KEY, text TEXT NOT NULL)",)
WAIT = 30.0  # a bound for threads that should finish at once, not a timing


@pytest.fixture
def tables(store_url: str) -> Iterator[Tables]:
    opened = Tables(parse_store(store_url), SCHEMA)
    yield opened
    opened.close()


def _note(tables: Tables, n: int) -> None:
    with tables.transaction() as cursor:
        cursor.execute("INSERT INTO notes (id, text) VALUES (?, ?)", (n, f"note {n}"))


def test_a_read_neither_waits_for_an_open_write_nor_sees_it(tables: Tables) -> None:
    _note(tables, 1)
    writing, read_done = threading.Event(), threading.Event()
    seen: list[list[tuple[int]]] = []

    def writer() -> None:
        with tables.transaction() as cursor:
            cursor.execute("INSERT INTO notes (id, text) VALUES (?, ?)", (2, "uncommitted"))
            writing.set()
            # The transaction stays open until the read has finished (or the bound passes).
            read_done.wait(WAIT)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(WAIT)
        seen.append(tables.query("SELECT id FROM notes ORDER BY id"))
        assert thread.is_alive(), "the read finished only once the write had committed"
    finally:
        read_done.set()
        thread.join(WAIT)
    assert [tuple(row) for row in seen[0]] == [(1,)]
    assert [tuple(row) for row in tables.query("SELECT id FROM notes ORDER BY id")] == [(1,), (2,)]


def test_reads_from_many_threads_see_every_committed_write(tables: Tables) -> None:
    for n in range(20):
        _note(tables, n)
    results: dict[int, list[str]] = {}

    def reader(k: int) -> None:
        rows = tables.query("SELECT text FROM notes WHERE id >= ? ORDER BY id", (k,))
        results[k] = [text for (text,) in rows]

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert results == {k: [f"note {n}" for n in range(k, 20)] for k in range(20)}


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_threads_that_have_ended_leave_no_connection_open(tables: Tables) -> None:
    def backends() -> int:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0])

    def read_once() -> None:
        tables.query("SELECT count(*) FROM notes")

    before = backends()
    for _ in range(10):
        thread = threading.Thread(target=read_once)
        thread.start()
        thread.join(WAIT)
    # Each new reading thread closes the connections of those that ended: one is left.
    assert backends() <= before + 1
    tables.close()
    assert backends() <= before
