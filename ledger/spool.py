"""A log's entries kept on local disk, for a verifier that receives the log once, in position
order (e.g. over HTTP), and must read it more than once in constant memory: whole, in position
order, and stream by stream (by several worker processes at once).

It is a temporary SQLite file, rows keyed by position and indexed by (stream, seq); stream and
seq are read from each entry as it arrives (a light decode, checked in full later), so nothing
but the entry bytes is taken on trust. Writes skip the journal and fsync: the file lives only
as long as one verification, and nothing survives a crash that needs to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

# position, stream, seq, entry hash (hex, as the log gave it), entry bytes
Row = tuple[int, str, int, str, bytes]

_FETCH = 1000


class _Statement(msgspec.Struct):
    stream: str


class _Entry(msgspec.Struct):
    seq: int
    statement: _Statement


_place = msgspec.json.Decoder(_Entry).decode


def place(data: bytes) -> tuple[str, int]:
    """The (stream, seq) an entry names, or ("", 0) if it does not even decode that far."""
    try:
        entry = _place(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "", 0
    return entry.statement.stream, entry.seq


class Spool:
    """Entries by position on disk, written once in order, then read as often as needed."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly:  # another connection to a spool written elsewhere (a worker process)
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            return
        self._conn = sqlite3.connect(path)
        self._conn.execute("PRAGMA journal_mode=OFF")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (position INTEGER PRIMARY KEY, stream TEXT NOT"
            " NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, data BLOB NOT NULL)"
        )
        self._conn.execute("CREATE INDEX IF NOT EXISTS entries_place ON entries (stream, seq)")

    def close(self) -> None:
        self._conn.close()

    def add(self, rows: Sequence[Row]) -> None:
        """Append rows (one transaction)."""
        with self._conn:
            self._conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)

    def size(self) -> int:
        """How many entries it holds."""
        return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def rows(self) -> Iterator[tuple[int, str, int, str, bytes]]:
        """(position, stream, seq, hash, entry bytes) in position order, a page at a time."""
        after = -1
        while True:
            page = self._conn.execute(
                "SELECT position, stream, seq, hash, data FROM entries WHERE position > ?"
                " ORDER BY position LIMIT ?",
                (after, _FETCH),
            ).fetchall()
            yield from page
            if len(page) < _FETCH:
                return
            after = page[-1][0]

    def stream(self, stream: str) -> Iterator[tuple[int, int, bytes]]:
        """(position, seq, entry bytes) of the entries that name one stream, by seq (then
        position: a log may hold two that say they are the same), a page at a time."""
        seq, position = 0, -1
        while True:
            page = self._conn.execute(
                "SELECT position, seq, data FROM entries WHERE stream = ?"
                " AND (seq > ? OR (seq = ? AND position > ?)) ORDER BY seq, position LIMIT ?",
                (stream, seq, seq, position, _FETCH),
            ).fetchall()
            yield from page
            if len(page) < _FETCH:
                return
            position, seq = page[-1][0], page[-1][1]

    def position(self, stream: str, seq: int) -> int | None:
        """Where the entry (stream, seq) sits in the log, if it is here."""
        row = self._conn.execute(
            "SELECT position FROM entries WHERE stream = ? AND seq = ? ORDER BY position LIMIT 1",
            (stream, seq),
        ).fetchone()
        return None if row is None else int(row[0])


def reader(path: str) -> Spool:
    """Another connection to a spool written elsewhere, for reading only (a worker's)."""
    return Spool(Path(path), readonly=True)
