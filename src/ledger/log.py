"""The ledger's global log: the sealer gives every entry its dense 0-based position, adds its
leaf to the RFC 9162 Merkle tree and signs checkpoints; `Log` reads positions, checkpoints and
proofs back.

Tables live in the event store itself (the SQLite file, or the PostgreSQL schema), so a backup
of the store holds its own proofs: `log_entries` (position → notification id, stream, seq and
entry hash), `log_nodes` (every perfect subtree, keyed by level and index) and
`log_checkpoints` (every signed note). Positions are assigned by following the notification
log in order, so holes in PostgreSQL notification ids never become holes in positions.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ledger import checkpoint as checkpoints
from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.errors import IntegrityViolation, LedgerError
from ledger.keys import Ed25519PrivateKey
from ledger.leader import Leadership, lead_and_follow
from ledger.ledger import Ledger
from ledger.stream import ENTRY_TOPIC
from ledger.tables import Cursor, EventRows, Tables

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS log_entries (position BIGINT PRIMARY KEY,"
    " notification_id BIGINT NOT NULL UNIQUE, stream TEXT NOT NULL, seq BIGINT NOT NULL,"
    " hash {blob} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS log_entries_hash ON log_entries (hash)",
    "CREATE TABLE IF NOT EXISTS log_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,"
    " hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
    "CREATE TABLE IF NOT EXISTS log_checkpoints (size BIGINT PRIMARY KEY, root {blob} NOT NULL,"
    " note TEXT NOT NULL)",
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SealedEntry:
    """An entry with its place in the global log."""

    position: int
    stream: str
    seq: int
    hash: str
    data: bytes


class ProofUnavailable(LedgerError):
    """A proof was asked for a size beyond the signed tree, or for an entry it does not hold."""

    code = "not_found"


class Log:
    """Reads the sealed log: positions, checkpoints and proofs (each proof O(log n) reads)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.tables = Tables(ledger.store, SCHEMA)
        self._events_table: str = ledger.recorder.events_table_name  # type: ignore[attr-defined]
        self._entry_rows = EventRows(self.tables, self._events_table, [ENTRY_TOPIC])

    def close(self) -> None:
        self.tables.close()

    def checkpoint(self) -> Checkpoint | None:
        """The latest signed checkpoint, if any."""
        rows = self.tables.query(
            "SELECT size, root, note FROM log_checkpoints ORDER BY size DESC LIMIT 1"
        )
        if not rows:
            return None
        size, root, note = rows[0]
        return Checkpoint(self.ledger.origin, int(size), bytes(root), note)

    def checkpoint_at(self, size: int) -> Checkpoint | None:
        """The checkpoint signed at exactly this tree size, if one was."""
        rows = self.tables.query("SELECT root, note FROM log_checkpoints WHERE size = ?", (size,))
        return Checkpoint(self.ledger.origin, size, bytes(rows[0][0]), rows[0][1]) if rows else None

    def size(self) -> int:
        """How many entries have a position (sealed, perhaps not yet in a checkpoint)."""
        rows = self.tables.query("SELECT MAX(position) FROM log_entries")
        return 0 if rows[0][0] is None else int(rows[0][0]) + 1

    def position(self, entry_hash: str) -> int | None:
        """The position of the entry with this hash (lowercase hex), if sealed."""
        try:
            digest = bytes.fromhex(entry_hash)
        except ValueError:
            return None
        rows = self.tables.query("SELECT position FROM log_entries WHERE hash = ?", (digest,))
        return int(rows[0][0]) if rows else None

    def positions(self, after: int, limit: int) -> list[tuple[int, int, str, int, str]]:
        """(position, notification id, stream, seq, entry hash) after `after`, in order."""
        return [
            (int(p), int(n), s, int(q), bytes(h).hex())
            for p, n, s, q, h in self.tables.query(
                "SELECT position, notification_id, stream, seq, hash FROM log_entries"
                " WHERE position > ? ORDER BY position LIMIT ?",
                (after, limit),
            )
        ]

    def entries(self, after: int, limit: int, upto: int | None = None) -> list[SealedEntry]:
        """Sealed entries after position `after` (and up to `upto`), with their stored bytes.

        One indexed range read joining positions to the event rows, so catch-up costs no more
        than reading the log itself.
        """
        table, key = self._events_table, self._entry_rows.key
        bound = "" if upto is None else " AND l.position <= ?"
        params: tuple[int, ...] = (after,) if upto is None else (after, upto)
        rows = self.tables.query(
            f"SELECT l.position, l.stream, l.seq, l.hash, e.state FROM log_entries l"
            f" JOIN {table} e ON e.{key} = l.notification_id"
            f" WHERE l.position > ?{bound} ORDER BY l.position LIMIT ?",
            (*params, limit),
        )
        return [SealedEntry(int(p), s, int(q), bytes(h).hex(), bytes(d)) for p, s, q, h, d in rows]

    def unsealed(self, after: int, limit: int) -> list[tuple[int, str, int, bytes]]:
        """(notification id, stream, seq, entry bytes) of entries after that notification.

        Read straight from the event table (the sealer's hot path: no event objects).
        """
        rows = self._entry_rows.after(after, limit)
        return [(int(n), _dashed(o), int(v), bytes(d)) for n, o, v, _, d in rows]

    def last_position_upto(self, notification_id: int) -> int:
        """The last position whose entry is at or before this notification (-1 if none)."""
        rows = self.tables.query(
            "SELECT position FROM log_entries WHERE notification_id <= ?"
            " ORDER BY notification_id DESC LIMIT 1",
            (notification_id,),
        )
        return int(rows[0][0]) if rows else -1

    def leaf(self, position: int) -> bytes | None:
        """The stored leaf hash at a position."""
        return self.fetch([(0, position)]).get((0, position))

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf `index` in the tree of `size` leaves."""
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofUnavailable(f"position {index} is not in the tree of size {size}")
        return merkle.inclusion_path(index, size, self.fetch)

    def consistency(self, old: int, new: int) -> list[bytes]:
        """The proof that the tree of size `new` extends the tree of size `old`."""
        self._check_size(new)
        if not 0 <= old <= new:
            raise ProofUnavailable(f"no consistency proof from size {old} to size {new}")
        return merkle.consistency_path(old, new, self.fetch)

    def root(self, size: int) -> bytes:
        self._check_size(size)
        return merkle.root(size, self.fetch)

    def fetch(self, keys: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
        """Stored perfect-subtree hashes by (level, index), in one query."""
        return _fetch(self.tables.query, keys)

    def _check_size(self, size: int) -> None:
        latest = self.checkpoint()
        signed = latest.size if latest else 0
        if size > signed:
            raise ProofUnavailable(f"the latest signed tree has {signed} entries, not {size}")


class Sealer:
    """Follows the notification log and seals each entry into the global log.

    Each batch writes positions, tree nodes and (when due) a signed checkpoint in one
    transaction: after a crash it resumes at the last committed batch. A checkpoint is signed
    after each batch but at most once per `interval` seconds, and only after proving that the
    new tree is consistent with the previous checkpoint.
    """

    def __init__(
        self,
        ledger: Ledger,
        key: Ed25519PrivateKey,
        log: Log | None = None,
        batch_size: int = 2000,
        interval: float = 1.0,
    ) -> None:
        self.ledger = ledger
        self.key = key
        self.log = log or Log(ledger)
        self.batch_size = batch_size
        self.interval = interval
        self.leadership = Leadership(ledger.store, "sealer")
        self._frontier: merkle.Frontier | None = None
        self._last_notification = 0
        self._last_signed = float("-inf")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[int], object]] = []
        ledger.on_append(self._wake.set)

    def on_commit(self, callback: Callable[[int], object]) -> None:
        """Call `callback(size)` after each sealed batch commits (in the sealer's thread)."""
        self._listeners.append(callback)

    def run_once(self, limit: int | None = None) -> int:
        """Seal the next batch of entries; returns how many it sealed."""
        frontier = self._load()
        rows = self.log.unsealed(self._last_notification, limit or self.batch_size)
        if not rows:
            self.sign_pending()
            return 0
        start = frontier.size
        entries, nodes = [], []
        append, leaf_hash, sha256 = frontier.append, merkle.leaf_hash, hashlib.sha256
        try:
            for offset, (notification_id, stream, seq, data) in enumerate(rows):
                nodes.extend(append(leaf_hash(data)))
                entries.append(
                    (start + offset, notification_id, stream, seq, sha256(data).digest())
                )
            with self.log.tables.transaction() as cursor:
                cursor.copy(
                    "log_entries", ("position", "notification_id", "stream", "seq", "hash"), entries
                )
                cursor.copy("log_nodes", ("level", "idx", "hash"), nodes)
                if time.monotonic() - self._last_signed >= self.interval:
                    self._sign(cursor, frontier)
        except BaseException:
            self._frontier = None  # reload from what was committed
            raise
        self._last_notification = rows[-1][0]
        for callback in self._listeners:
            callback(frontier.size)
        return len(rows)

    def catch_up(self) -> int:
        """Seal everything there is, then sign a checkpoint of it; returns how many sealed."""
        total = 0
        while count := self.run_once(limit=max(self.batch_size, 20_000)):
            total += count
        self.sign_pending(force=True)
        return total

    def sign_pending(self, force: bool = False) -> bool:
        """Sign a checkpoint of everything sealed if the latest one is older (and it is due)."""
        frontier = self._load()
        if not force and time.monotonic() - self._last_signed < self.interval:
            return False
        latest = self.log.checkpoint()
        if latest is not None and latest.size == frontier.size:
            return False
        with self.log.tables.transaction() as cursor:
            self._sign(cursor, frontier)
        return True

    def _sign(self, cursor: Cursor, frontier: merkle.Frontier) -> None:
        size, root = frontier.size, frontier.root()
        cursor.execute("SELECT size, root FROM log_checkpoints ORDER BY size DESC LIMIT 1")
        previous = cursor.fetchall()

        def fetch(keys: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
            return _fetch(_querying(cursor), keys)

        if size and merkle.root(size, fetch) != root:
            raise IntegrityViolation("log", size, "the stored tree does not match the sealed one")
        if previous:
            old, old_root = int(previous[0][0]), bytes(previous[0][1])
            if old == size:
                return
            path = merkle.consistency_path(old, size, fetch)
            if not merkle.verify_consistency(old, size, old_root, root, path):
                raise IntegrityViolation(
                    "log", old, f"the tree of size {size} does not extend the checkpoint at {old}"
                )
        signed = checkpoints.sign(self.ledger.origin, size, root, self.key)
        cursor.execute(
            "INSERT INTO log_checkpoints (size, root, note) VALUES (?, ?, ?)",
            (size, root, signed.note),
        )
        self._last_signed = time.monotonic()

    def _load(self) -> merkle.Frontier:
        if self._frontier is None:
            rows = self.log.tables.query(
                "SELECT position, notification_id FROM log_entries ORDER BY position DESC LIMIT 1"
            )
            size = int(rows[0][0]) + 1 if rows else 0
            self._last_notification = int(rows[0][1]) if rows else 0
            self._frontier = merkle.Frontier(size, self.log.fetch)
        return self._frontier

    # -- running in the background ------------------------------------------------------------

    def start(self, poll: float = 0.25) -> None:
        """Seal in a background thread, once this process leads."""
        self._thread = threading.Thread(target=self._run, args=(poll,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; a leader first seals what is left and signs it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self.leadership.held:
            try:
                self.catch_up()
            except Exception:
                _log.exception("could not seal the last entries before stopping")
        self.leadership.release()

    def _run(self, poll: float) -> None:
        def led() -> None:
            self._frontier = None  # whoever led before may have sealed more

        lead_and_follow(
            self.leadership, self.run_once, self._stop, self._wake, min(poll, self.interval), led
        )


def _dashed(hex_id: str) -> str:
    """A UUID stored as 32 hex digits, in its usual 8-4-4-4-12 form."""
    h = hex_id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _querying(cursor: Cursor) -> Any:
    def query(sql: str, params: Any = ()) -> list[Any]:
        cursor.execute(sql, params)
        return cursor.fetchall()

    return query


def _fetch(query: Any, keys: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    wanted = list(keys)
    found: dict[merkle.Node, bytes] = {}
    for chunk in range(0, len(wanted), 200):
        part = wanted[chunk : chunk + 200]
        where = " OR ".join("(level = ? AND idx = ?)" for _ in part)
        params = [value for key in part for value in key]
        for level, idx, hash_ in query(
            f"SELECT level, idx, hash FROM log_nodes WHERE {where}", params
        ):
            found[(int(level), int(idx))] = bytes(hash_)
    return found
