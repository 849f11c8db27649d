"""The ledger's global log: the sealer (`ledger.sealer`) gives every entry its dense 0-based
position, adds its leaf to the RFC 9162 Merkle tree and signs checkpoints; `Log` reads
positions, checkpoints and proofs back.

Tables live in the event store itself (the SQLite file, or the PostgreSQL schema), so a backup
of the store holds its own proofs: `log_entries` (position → notification id, stream, seq,
entry hash and leaf hash), `log_nodes` (the perfect subtrees of even level above the leaves,
keyed by level and index; one of odd level is hashed from its two children when read, so a
proof still reads O(log n) stored hashes) and `log_checkpoints` (every signed note). Positions
are assigned by following the notification log in order, so holes in PostgreSQL notification
ids never become holes in positions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerError
from ledger.ledger import Ledger
from ledger.stream import ENTRY_TOPIC
from ledger.tables import EventRows, Tables

# Entries are looked up by hash through an index of the hash's first 8 bytes (the whole hash is
# then compared): about a third of the size of an index of whole hashes, so cheaper to keep.
HASH_INDEX = (
    "CREATE INDEX IF NOT EXISTS log_entries_hash_prefix ON log_entries (substr(hash, 1, 8))"
)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS log_entries (position {rowid},"
    " notification_id BIGINT NOT NULL UNIQUE, stream TEXT NOT NULL, seq BIGINT NOT NULL,"
    " hash {blob} NOT NULL, leaf {blob} NOT NULL)",
    HASH_INDEX,
    "CREATE TABLE IF NOT EXISTS log_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,"
    " hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
    "CREATE TABLE IF NOT EXISTS log_checkpoints (size BIGINT PRIMARY KEY, root {blob} NOT NULL,"
    " note TEXT NOT NULL)",
)
ENTRY_COLUMNS = ("position", "notification_id", "stream", "seq", "hash", "leaf")
NODE_COLUMNS = ("level", "idx", "hash")

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
        self.events_table: str = ledger.recorder.events_table_name  # type: ignore[attr-defined]
        self._entry_rows = EventRows(self.tables, self.events_table, [ENTRY_TOPIC])

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
        rows = self.tables.query(
            "SELECT position FROM log_entries WHERE substr(hash, 1, 8) = ? AND hash = ?",
            (digest[:8], digest),
        )
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
        table, key = self.events_table, self._entry_rows.key
        bound = "" if upto is None else " AND l.position <= ?"
        params: tuple[int, ...] = (after,) if upto is None else (after, upto)
        rows = self.tables.query(
            f"SELECT l.position, l.stream, l.seq, l.hash, e.state FROM log_entries l"
            f" JOIN {table} e ON e.{key} = l.notification_id"
            f" WHERE l.position > ?{bound} ORDER BY l.position LIMIT ?",
            (*params, limit),
        )
        return [SealedEntry(int(p), s, int(q), bytes(h).hex(), bytes(d)) for p, s, q, h, d in rows]

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
        return fetch_nodes(self.tables.query, keys)

    def _check_size(self, size: int) -> None:
        latest = self.checkpoint()
        signed = latest.size if latest else 0
        if size > signed:
            raise ProofUnavailable(f"the latest signed tree has {signed} entries, not {size}")


def stored_keys(keys: Iterable[merkle.Node]) -> set[merkle.Node]:
    """The stored hashes that give these perfect subtrees: each itself if its level is even,
    else its two children."""
    stored: set[merkle.Node] = set()
    for level, idx in keys:
        if level & 1:
            stored.update(((level - 1, 2 * idx), (level - 1, 2 * idx + 1)))
        else:
            stored.add((level, idx))
    return stored


def fetch_nodes(query: Any, keys: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """Perfect-subtree hashes by (level, index): a leaf from `log_entries`, an even level from
    `log_nodes`, an odd one hashed from its two children (one query for a proof)."""
    wanted = list(keys)
    needed = stored_keys(wanted)
    leaves = sorted(idx for level, idx in needed if level == 0)
    nodes = sorted(key for key in needed if key[0])
    found: dict[merkle.Node, bytes] = {}
    # One statement (and so one transaction) per 200 stored hashes, leaves and nodes together.
    for chunk in range(0, max(len(leaves), len(nodes)), 200):
        positions, part = leaves[chunk : chunk + 200], nodes[chunk : chunk + 200]
        selects: list[str] = []
        params: list[int] = []
        if positions:
            marks = ", ".join("?" * len(positions))
            selects.append(f"SELECT 0, position, leaf FROM log_entries WHERE position IN ({marks})")
            params += positions
        if part:
            where = " OR ".join("(level = ? AND idx = ?)" for _ in part)
            selects.append(f"SELECT level, idx, hash FROM log_nodes WHERE {where}")
            params += [value for key in part for value in key]
        for level, idx, hash_ in query(" UNION ALL ".join(selects), params):
            found[(int(level), int(idx))] = bytes(hash_)
    result: dict[merkle.Node, bytes] = {}
    for level, idx in wanted:
        if not level & 1:
            if (level, idx) in found:
                result[(level, idx)] = found[(level, idx)]
            continue
        left, right = found.get((level - 1, 2 * idx)), found.get((level - 1, 2 * idx + 1))
        if left is not None and right is not None:
            result[(level, idx)] = merkle.node_hash(left, right)
    return result


# Entries a catch-up seals per transaction.
