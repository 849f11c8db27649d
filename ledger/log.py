"""The ledger's global log: the sealer gives every entry its dense 0-based position, adds its
leaf to the RFC 9162 Merkle tree and signs checkpoints; `Log` reads positions, checkpoints and
proofs back.

Tables live in the event store itself (the SQLite file, or the PostgreSQL schema), so a backup
of the store holds its own proofs: `log_entries` (position → notification id, stream, seq,
entry hash and leaf hash), `log_nodes` (the perfect subtrees of even level above the leaves,
keyed by level and index; one of odd level is hashed from its two children when read, so a
proof still reads O(log n) stored hashes) and `log_checkpoints` (every signed note). Positions
are assigned by following the notification log in order, so holes in PostgreSQL notification
ids never become holes in positions.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

from ledger import checkpoint as checkpoints
from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.errors import IntegrityViolation, LedgerError
from ledger.keys import Ed25519PrivateKey
from ledger.leader import Leadership, Progress, lead_and_follow
from ledger.ledger import Ledger
from ledger.stream import ENTRY_TOPIC
from ledger.tables import PARAMETERS, Cursor, EventRow, EventRows, Tables, dashed, insert_sql

# Entries are looked up by hash through an index of the hash's first 8 bytes (the whole hash is
# then compared): about a third of the size of an index of whole hashes, so cheaper to keep.
_HASH_INDEX = (
    "CREATE INDEX IF NOT EXISTS log_entries_hash_prefix ON log_entries (substr(hash, 1, 8))"
)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS log_entries (position {rowid},"
    " notification_id BIGINT NOT NULL UNIQUE, stream TEXT NOT NULL, seq BIGINT NOT NULL,"
    " hash {blob} NOT NULL, leaf {blob} NOT NULL)",
    _HASH_INDEX,
    "CREATE TABLE IF NOT EXISTS log_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,"
    " hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
    "CREATE TABLE IF NOT EXISTS log_checkpoints (size BIGINT PRIMARY KEY, root {blob} NOT NULL,"
    " note TEXT NOT NULL)",
)
Columns = tuple[Sequence[Any], ...]  # rows to insert, a sequence per column
Write = Callable[[Cursor], None]
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


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch of entries hashed and added to the tree, to be written in one transaction."""

    entries: Write
    nodes: Write
    last_notification: int
    size: int  # of the tree once it is written
    root: bytes | None  # sign a checkpoint of the tree at `size` with it (None: not due)


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
        self.progress = Progress("sealer", self.log.size)  # the sealed size, and any failure
        ledger.on_append(self._wake.set)

    def on_commit(self, callback: Callable[[int], object]) -> None:
        """Call `callback(size)` after each sealed batch commits (in the sealer's thread)."""
        self._listeners.append(callback)

    def run_once(self, limit: int | None = None) -> int:
        """Seal the next batch of entries; returns how many it sealed."""
        frontier = self._load()
        rows = self.log._entry_rows.after(self._last_notification, limit or self.batch_size)
        if not rows:
            self.sign_pending()
            return 0
        try:
            batch = self._prepare(rows, frontier, sign=False)
            with self.log.tables.transaction() as cursor:
                self._write(cursor, batch)
                if time.monotonic() - self._last_signed >= self.interval:
                    self._sign(cursor, frontier.size, frontier.root())
        except BaseException:
            self._frontier = None  # reload from what was committed
            raise
        self._last_notification = batch.last_notification
        for callback in self._listeners:
            callback(frontier.size)
        return len(rows)

    def catch_up(self) -> int:
        """Seal everything there is, then sign a checkpoint of it; returns how many sealed.

        A backlog of more than one batch is read and hashed in this thread while another
        writes the batch before (SQLite and PostgreSQL work without holding the GIL). With a
        backlog at least as long as the log already sealed, the index of entry hashes is
        dropped first and made again at the end in one sorted pass (kept up to date entry by
        entry, it would cost more than everything else the sealer writes); meanwhile a lookup
        by hash still answers, by reading the table. Were the process to die in between, the
        next `Log` opened on the store makes it again.
        """
        limit = max(self.batch_size, _CATCH_UP_BATCH)
        sealed = self._load().size
        backlog = self._backlog()
        if backlog <= limit:
            total = 0
            while count := self.run_once(limit=limit):
                total += count
        else:
            deferred = backlog >= sealed
            if deferred:
                self._drop_hash_index()
            try:
                total = self._pipeline(limit)
            finally:
                if deferred:
                    with self.log.tables.transaction() as cursor:
                        cursor.execute(_HASH_INDEX)
        self.sign_pending(force=True)
        return total

    def _drop_hash_index(self) -> None:
        tables, events = self.log.tables, self.log._events_table
        with tables.transaction() as cursor:
            if tables.postgres:
                # A table just filled has no statistics until autovacuum gets to it: without
                # them the planner sorts every event after the position for each batch read
                # instead of reading a batch's worth in notification order.
                cursor.execute(f"ANALYZE {events} ({self.log._entry_rows.key}, topic)")
            cursor.execute("DROP INDEX IF EXISTS log_entries_hash_prefix")

    def _pipeline(self, limit: int) -> int:
        """Seal every waiting entry, `limit` to a transaction, writing each batch in a thread
        of its own while the next is read and hashed; returns how many it sealed."""
        tables = self.log.tables
        reader = Tables(self.ledger.store, ())  # reads beside the writer's transactions
        rows_after = EventRows(reader, self.log._events_table, [ENTRY_TOPIC]).after
        batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        committed: queue.SimpleQueue[int] = queue.SimpleQueue()
        failed: list[BaseException] = []

        def write() -> None:
            while (batch := batches.get()) is not None:
                if failed:
                    continue  # drained, never written: they follow one that was not
                try:
                    with tables.transaction() as cursor:
                        self._write(cursor, batch)
                except BaseException as exc:
                    failed.append(exc)
                    continue
                committed.put(batch.size)

        writer = threading.Thread(target=write, name="sealer-writer", daemon=True)
        writer.start()
        total = 0
        try:
            frontier = self._load()
            after = self._last_notification
            while not failed and (rows := rows_after(after, limit)):
                due = time.monotonic() - self._last_signed >= self.interval
                if due:
                    self._last_signed = time.monotonic()  # signed once this batch is written
                batches.put(self._prepare(rows, frontier, sign=due))
                after, total = rows[-1][0], total + len(rows)
                self._committed(committed)
        except BaseException:
            self._frontier = None
            raise
        finally:
            batches.put(None)
            writer.join()
            reader.close()
        self._committed(committed)
        if failed:
            self._frontier = None  # reload from what was committed
            raise failed[0]
        self._last_notification = after
        return total

    def _committed(self, sizes: queue.SimpleQueue[int]) -> None:
        """Tell the listeners of the batches written since last asked."""
        while not sizes.empty():
            size = sizes.get()
            for callback in self._listeners:
                callback(size)

    def _prepare(self, rows: Sequence[EventRow], frontier: merkle.Frontier, sign: bool) -> _Batch:
        """Hash a batch of event rows and add their leaves to the tree: what to write."""
        # Column by column, in C where possible: no object per row beyond what the read made.
        nids, hex_ids, seqs, _, datas = zip(*rows, strict=True)
        sha256, start = hashlib.sha256, frontier.size
        streams = {hex_id: dashed(hex_id) for hex_id in set(hex_ids)}
        leaves = list(map(merkle.leaf_hash, datas))
        entries = (
            range(start, start + len(rows)),
            nids,
            list(map(streams.__getitem__, hex_ids)),
            seqs,
            [sha256(data).digest() for data in datas],
            leaves,
        )
        nodes = stored_nodes(frontier.extend(leaves))
        root = frontier.root() if sign else None
        postgres = self.log.tables.postgres
        return _Batch(
            insert(postgres, "log_entries", ENTRY_COLUMNS, entries),
            insert(postgres, "log_nodes", NODE_COLUMNS, nodes),
            int(nids[-1]),
            frontier.size,
            root,
        )

    def _write(self, cursor: Cursor, batch: _Batch) -> None:
        """Write a prepared batch (and sign it, if it says so) in the cursor's transaction."""
        batch.entries(cursor)
        batch.nodes(cursor)
        if batch.root is not None:
            self._sign(cursor, batch.size, batch.root)

    def _backlog(self) -> int:
        """At most how many entries are waiting: events of any kind after the last sealed."""
        rows = self.log._entry_rows
        found = self.log.tables.query(f"SELECT MAX({rows.key}) FROM {self.log._events_table}")
        last = found[0][0] if found else None
        return 0 if last is None else max(0, int(last) - self._last_notification)

    def sign_pending(self, force: bool = False) -> bool:
        """Sign a checkpoint of everything sealed if the latest one is older (and it is due)."""
        frontier = self._load()
        if not force and time.monotonic() - self._last_signed < self.interval:
            return False
        latest = self.log.checkpoint()
        if latest is not None and latest.size == frontier.size:
            return False
        with self.log.tables.transaction() as cursor:
            self._sign(cursor, frontier.size, frontier.root())
        return True

    def _sign(self, cursor: Cursor, size: int, root: bytes) -> None:
        """Sign a checkpoint of the tree of `size` leaves, once it is shown to be the stored
        tree and to extend the latest checkpoint."""
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
            self.leadership,
            self.run_once,
            self._stop,
            self._wake,
            min(poll, self.interval),
            led,
            self.progress,
        )


def _querying(cursor: Cursor) -> Any:
    def query(sql: str, params: Any = ()) -> list[Any]:
        cursor.execute(sql, params)
        return cursor.fetchall()

    return query


def stored_nodes(runs: Iterable[merkle.Run]) -> Columns:
    """The rows of `log_nodes` among newly completed perfect nodes: those of even level above
    the leaves (a leaf is stored with its entry; a node of odd level is its children's hash)."""
    kept = [(level, first, hashes) for level, first, hashes in runs if level and not level & 1]
    return (
        list(chain.from_iterable(repeat(level, len(hashes)) for level, _, hashes in kept)),
        list(chain.from_iterable(range(first, first + len(h)) for _, first, h in kept)),
        list(chain.from_iterable(hashes for _, _, hashes in kept)),
    )


def insert(postgres: bool, table: str, names: Sequence[str], columns: Columns) -> Write:
    """Rows given column by column, made ready to insert: the function returned writes them
    in a transaction's cursor. COPY on PostgreSQL; on SQLite as many rows to a statement as
    it allows (one statement per row, as executemany runs, costs several times as much),
    their parameters interleaved by slice assignment."""
    count = len(columns[0])
    if postgres:
        rows = list(zip(*columns, strict=True))

        def copy(cursor: Cursor) -> None:
            if rows:
                cursor.copy(table, names, rows)

        return copy
    into = f"{table} ({', '.join(names)})"
    width = len(names)
    per_statement = PARAMETERS // width
    # Python's sqlite3 binds a bytearray as it is, but looks for an adapter for each bytes
    # value first, which takes several times as long as the copy.
    blobs = [count and isinstance(column[0], bytes) for column in columns]
    statements = []
    for start in range(0, count, per_statement):
        end = min(count, start + per_statement)
        params: list[Any] = [None] * ((end - start) * width)
        for offset, (column, blob) in enumerate(zip(columns, blobs, strict=True)):
            part = column[start:end]
            params[offset::width] = list(map(bytearray, part)) if blob else part
        statements.append((insert_sql(into, width, end - start), params))

    def execute(cursor: Cursor) -> None:
        for sql, values in statements:
            cursor.execute(sql, values)

    return execute


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


def _fetch(query: Any, keys: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
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
_CATCH_UP_BATCH = 20_000
