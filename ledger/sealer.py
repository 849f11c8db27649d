"""The sealer: follows the notification log and gives every entry its dense 0-based position,
adds its leaf to the RFC 9162 Merkle tree and signs checkpoints, a batch to a transaction (the
tables are `ledger.log`'s)."""

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
from ledger.errors import IntegrityViolation
from ledger.keys import Ed25519PrivateKey
from ledger.leader import Leadership, Progress, lead_and_follow
from ledger.ledger import Ledger
from ledger.log import ENTRY_COLUMNS, HASH_INDEX, NODE_COLUMNS, Log, fetch_nodes
from ledger.stream import ENTRY_TOPIC
from ledger.tables import PARAMETERS, Cursor, EventRow, EventRows, Tables, dashed, insert_sql

Columns = tuple[Sequence[Any], ...]  # rows to insert, a sequence per column
Write = Callable[[Cursor], None]
_log = logging.getLogger(__name__)
_CATCH_UP_BATCH = 20_000


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
                        cursor.execute(HASH_INDEX)
        self.sign_pending(force=True)
        return total

    def _drop_hash_index(self) -> None:
        tables, events = self.log.tables, self.log.events_table
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
        rows_after = EventRows(reader, self.log.events_table, [ENTRY_TOPIC]).after
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
        found = self.log.tables.query(f"SELECT MAX({rows.key}) FROM {self.log.events_table}")
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
            return fetch_nodes(_querying(cursor), keys)

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
