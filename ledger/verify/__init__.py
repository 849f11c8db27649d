"""Verification of a whole ledger, trusting nothing but the ledger's public key.

One checking core (`check_log`) reads a log in constant memory (plus a little per stream), on
every core, and parses each entry once. First this process folds the directory (its final
state, later revocations and `compromised_since` included, is what every key is judged by);
then:

- it reads the log once, in position order: it checks that every position holds the entry the
  sealer sealed there (for a store, against its notification log: nothing missing, nothing the
  sealer never saw) and rebuilds the Merkle tree, whose root must match every signed
  checkpoint at its size (and a trusted one, saved earlier). Each stream it meets goes to a
  worker process;
- a worker reads its streams from the same source itself, seq by seq: it parses every entry
  (its canonical bytes, its statement in full), checks its signature against the key valid
  when it was recorded and its place in the stream's hash chain, and replays the stream's
  rules as it goes (`rules`, if given; for every stream but the directory);
- at the end, each stream must have ended in the worker where it ended in this process.

What it reads comes from a `Source`: `verify_store` reads the store itself (up to the last
entry there when verification begins); another source may be a copy of the log read from
elsewhere (e.g. through a server's API). The failure named, by position, stream and seq, is
the earliest in the log that the entries, chains, positions or tree show; only if there is
none, the earliest entry the rules refuse (an altered directory entry can make the rules
refuse entries before it: the altered entry is the one to name).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from hashlib import sha256
from typing import Any

from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.directory import Directory
from ledger.entry_reader import read
from ledger.errors import LedgerError
from ledger.keys import Ed25519PublicKey, public_key_b64
from ledger.ledger import Ledger
from ledger.log import Log
from ledger.verify.model import (
    PAGE,
    RUN,
    TASK,
    TASK_STREAMS,
    Checked,
    Failure,
    Flaw,
    Opener,
    Report,
    Row,
    Rules,
    Source,
    StreamRow,
    Summary,
    VerificationFailed,
    fail,
)
from ledger.verify.store import (
    StoreSource,
    StoreStreams,
)
from ledger.verify.workers import (
    check_streams,
    init_worker,
    pack_directory,
    workers_context,
)

__all__ = [
    "PAGE",
    "RUN",
    "Failure",
    "Opener",
    "Report",
    "Row",
    "StoreStreams",
    "StreamRow",
    "VerificationFailed",
    "check_entry",
    "check_log",
    "fail",
    "verify_store",
]


def verify_store(
    ledger: Ledger,
    ledger_key: Ed25519PublicKey,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    rules: Rules | None = None,
) -> Report:
    """Verify everything the store holds; raises `VerificationFailed` at the first problem."""
    log = Log(ledger)
    try:
        return check_log(StoreSource(ledger, log, ledger_key), trusted, workers, progress, rules)
    finally:
        log.close()


def check_log(
    source: Source,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    rules: Rules | None = None,
) -> Report:
    """The checking core: every entry of `source`, on every core; raises `VerificationFailed`
    at the first problem."""
    latest = source.latest()
    if trusted is not None and trusted.size > latest.size:
        fail(
            latest.size,
            "log",
            0,
            f"the trusted checkpoint has {trusted.size} entries, the ledger only"
            f" {latest.size}: the log was truncated",
        )
    directory = source.directory()
    counted = _Counted(source.checkpoints())
    signed = _with_trusted(counted, trusted)
    expected = next(signed, None)
    while expected is not None and expected.size == 0:
        if expected.root != merkle.EMPTY_ROOT:
            fail(0, "log", 0, "the empty tree's checkpoint has a wrong root")
        expected = next(signed, None)
    workers = workers or os.cpu_count() or 1
    pool = ProcessPoolExecutor(
        workers,
        mp_context=workers_context(),
        initializer=init_worker,
        initargs=(
            pack_directory(directory),
            public_key_b64(source.authority),
            source.streams(),
            rules,
        ),
    )
    try:
        tasks = _Tasks(pool, progress)
        # Per stream as the source names it: [entries, hash of the last, its id] (`_Tasks`
        # adds what its worker says).
        heads: dict[str, list[Any]] = {}
        tree = merkle.Frontier()
        leaves: list[bytes] = []  # hashed, added to the tree a run at a time (`extend`)
        matched = latest  # the largest signed checkpoint the tree is known to match, at the end
        checked = unpositioned = 0
        stopped: Failure | None = None
        whole = False  # whether every row was read
        try:
            for page in source.rows():
                for position, sealed, stream, seq, _, data in page:
                    checked += 1
                    entry_hash = sha256(data).digest()
                    head = heads.get(stream)
                    if head is None:
                        head = heads[stream] = [1, entry_hash, source.name(stream)]
                        tasks.meet(head)
                    else:
                        head[0] += 1
                        head[1] = entry_hash
                    if position is None:
                        unpositioned += 1
                        continue
                    if entry_hash != sealed:
                        fail(position, head[2], seq, "the entry differs from the one sealed")
                    leaves.append(merkle.leaf_hash(data))
                    if expected is None or tree.size + len(leaves) != expected.size:
                        continue
                    tree.extend(leaves)
                    leaves.clear()
                    while expected is not None and expected.size == tree.size:
                        if tree.root() != expected.root:
                            fail(
                                position,
                                head[2],
                                seq,
                                f"the tree of size {expected.size} does not match its signed"
                                " checkpoint: history was rewritten",
                            )
                        if expected.size > matched.size:
                            matched = expected
                        expected = next(signed, None)
                tree.extend(leaves)
                leaves.clear()
                tasks.dispatch()
                if page and tasks.flawed_before(page[-1][4]):
                    break  # a worker found an entry that comes before anything still unread
            else:
                whole = True
        except VerificationFailed as exc:
            stopped = exc.failure  # named once the entries before it are checked
            tasks.quiet = True
        tasks.dispatch()
        if whole and tree.size < latest.size:
            stopped = Failure(
                tree.size,
                "log",
                0,
                f"the signed checkpoint covers {latest.size} entries but the log holds only"
                f" {tree.size}: entries were removed",
            )
            tasks.quiet = True
        tasks.finish(heads.values() if whole and stopped is None else None)
    finally:
        pool.shutdown(cancel_futures=True)
    first = _first(source, tasks.flaws)
    if first is not None and (stopped is None or _before(first, stopped)):
        stopped = first
    stopped = stopped or _first(source, tasks.refused)
    if stopped is not None:
        raise VerificationFailed(stopped)
    return Report(
        checked,
        len(heads),
        matched,
        counted.count,
        unpositioned + tree.size - matched.size,
        tuple(head[2] for head in heads.values()),
    )


def check_entry(data: bytes, directory: Directory, authority: Ed25519PublicKey) -> Summary:
    """Parse one stored entry and check its signature and key; never raises."""
    try:
        entry = read(data)
    except LedgerError as exc:
        return ("", 0, "", "", f"the entry does not parse: {exc.detail}")
    statement = entry.statement
    problem = directory.entry_problem(entry, authority, directory.authority_kid)
    return (statement.stream, entry.seq, entry.prev, entry.recorded_at, problem)


class _Counted:
    """The source's signed checkpoints, counted as they are read."""

    def __init__(self, signed: Iterator[Checkpoint]) -> None:
        self._signed = signed
        self.count = 0

    def __iter__(self) -> Iterator[Checkpoint]:
        for checkpoint in self._signed:
            self.count += 1
            yield checkpoint


def _with_trusted(signed: _Counted, trusted: Checkpoint | None) -> Iterator[Checkpoint]:
    """The signed checkpoints by size, with the trusted one in its place."""
    for checkpoint in signed:
        if trusted is not None and trusted.size < checkpoint.size:
            yield trusted
            trusted = None
        yield checkpoint
    if trusted is not None:
        yield trusted


class _Tasks:
    """Streams handed to the workers as this process meets them, a few to a task, and what
    the workers found. What a worker says of a stream is kept in its head (as a fourth item:
    its entries and the hash of its last, or None where it found a flaw), the task let go."""

    def __init__(self, pool: ProcessPoolExecutor, progress: Callable[[int], None] | None) -> None:
        self._pool = pool
        self._progress = progress
        self._met: list[list[Any]] = []  # heads of streams met since the last dispatch
        self._tasks: deque[tuple[Future[list[Checked]], list[list[Any]]]] = deque()
        self._flagged: list[int] = []  # keys of flaws found so far (appended by another thread)
        self.flaws: list[Flaw] = []
        self.refused: list[Flaw] = []
        self.quiet = False  # once a failure is known, progress stops

    def meet(self, head: list[Any]) -> None:
        """A stream seen for the first time (its head, as this process keeps it)."""
        self._met.append(head)

    def dispatch(self) -> None:
        """Hand the streams met so far to the workers; take in the tasks done."""
        task: list[list[Any]] = []
        size = 0
        for head in self._met:
            task.append(head)
            size += head[0]
            if size >= TASK or len(task) >= TASK_STREAMS:
                self._submit(task)
                task, size = [], 0
        if task:
            self._submit(task)
        self._met = []
        while self._tasks and self._tasks[0][0].done():
            self._take(*self._tasks.popleft())

    def _submit(self, heads: list[list[Any]]) -> None:
        future = self._pool.submit(check_streams, [head[2] for head in heads])
        future.add_done_callback(self._noted)
        self._tasks.append((future, heads))

    def _noted(self, future: Future[list[Checked]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self._flagged.extend(flaw[0] for *_, flaw, _ in future.result() if flaw is not None)

    def flawed_before(self, key: int) -> bool:
        """Whether a worker has found a flaw at or before the row with this key."""
        return bool(self._flagged) and min(self._flagged) <= key

    def _take(self, future: Future[list[Checked]], heads: list[list[Any]]) -> None:
        entries = 0
        for (_, count, last, flaw, refused), head in zip(future.result(), heads, strict=True):
            entries += count
            head.append(None if flaw is not None else (count, last))
            if flaw is not None:
                self.flaws.append(flaw)
                self.quiet = True
            if refused is not None:
                self.refused.append(refused)
                self.quiet = True
        if self._progress is not None and not self.quiet:
            self._progress(entries)

    def finish(self, heads: Iterable[list[Any]] | None) -> None:
        """Wait for every task. With the heads of a whole pass, each stream must have ended
        in its worker where it ended in this process."""
        while self._tasks:
            self._take(*self._tasks.popleft())
        for count, last, stream, worker in heads or ():
            if worker is not None and worker != (count, last.hex()):
                self.flaws.append((-1, stream, count, "the stream changed while it was verified"))


def _first(source: Source, flaws: list[Flaw]) -> Failure | None:
    """The flaw that comes first in the log, named by its position."""
    if not flaws:
        return None
    key, stream, seq, problem = min(flaws, key=lambda flaw: (flaw[0] < 0, flaw[0]))
    if key < 0:
        return Failure(None, "log", 0, f"stream {stream}: {problem}")
    return Failure(source.position(key), stream, seq, problem)


def _before(flaw: Failure, failure: Failure) -> bool:
    """Whether an entry's flaw comes before this process's failure (at one position, the
    flaw in the entry itself is named)."""
    if flaw.position is None or flaw.stream == "log":
        return False
    return failure.position is None or flaw.position <= failure.position
