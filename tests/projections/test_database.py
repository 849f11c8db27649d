"""The projections' own SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ledger.store import parse_store
from projections.database import Database


def test_a_new_projections_file_has_large_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    fresh = Database(parse_store(f"sqlite:///{tmp_path / 'fresh.db'}"))
    assert fresh.query("PRAGMA page_size") == [(16_384,)]
    fresh.close()
    old = tmp_path / "old.projections.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE earlier (x INTEGER)")
    conn.close()
    reopened = Database(parse_store(f"sqlite:///{tmp_path / 'old.db'}"))
    try:
        assert reopened.query("PRAGMA page_size") == [(4096,)]
        assert reopened.query("SELECT count(*) FROM projection_plans") == [(0,)]
    finally:
        reopened.close()
