"""What verification speaks of: its limits, the failure it names and the report it gives, and
the shapes of the rows, checks and sources it passes between its parts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from ledger.checkpoint import Checkpoint
from ledger.directory import Directory
from ledger.entry import Entry
from ledger.errors import LedgerError
from ledger.keys import Ed25519PublicKey

PAGE = 2000  # rows read at a time, by this process and by each worker
TASK = 1000  # entries (as far as this process has seen them) of the streams in one task
TASK_STREAMS = 64  # and at most this many streams
RUN = 128  # entries a worker parses before it checks their signatures together


@dataclass(frozen=True)
class Failure:
    """The first thing that does not hold, and where."""

    position: int | None
    stream: str
    seq: int
    problem: str

    def __str__(self) -> str:
        # The log, its checkpoints or a bundle's directory as a whole, not one entry:
        if self.stream in ("log", "checkpoint", "directory"):
            at = f" at position {self.position}" if self.position is not None else ""
            return f"{self.stream}{at}: {self.problem}"
        where = f"position {self.position}" if self.position is not None else "unsealed entry"
        return f"{where}, stream {self.stream}, seq {self.seq}: {self.problem}"


class VerificationFailed(LedgerError):
    """The ledger does not verify; `failure` names the first bad entry."""

    code = "verification_failed"

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


@dataclass(frozen=True)
class Report:
    """What was verified."""

    entries: int
    streams: int
    checkpoint: Checkpoint  # the largest signed checkpoint the tree matched
    checkpoints: int  # signed checkpoints matched or waiting for entries (not the trusted one)
    unsealed: int  # entries no signed checkpoint covers yet: checked, but not tamper-evident
    stream_ids: tuple[str, ...]


# What `check_entry` reports of one entry: stream, seq, prev, recorded_at, problem (or None).
Summary = tuple[str, int, str, str, str | None]
# A row of the log as this process reads it: position (None: not sealed yet), the entry hash
# sealed there (raw), where the source holds the entry (stream as the source names it, seq),
# the source's own key for the row (growing along the log: a notification id, or the
# position), and the entry bytes.
Row = tuple[int | None, bytes, str, int, int, bytes]
# A row of one stream as a worker reads it: the source's key, seq, entry bytes.
StreamRow = tuple[int, int, bytes]
# What a worker found wrong: the row's key, stream, seq, and the problem.
Flaw = tuple[int, str, int, str]
# A worker's account of one stream: its stream, entries read, the hash of the last one that
# checked out, the first flaw in an entry or the chain (where it stopped), and the first entry
# the rules refuse.
Checked = tuple[str, int, str, Flaw | None, Flaw | None]
# Given a stream (not the directory) and the directory's final state: a step that replays the
# stream's entries one after another against its rules, raising `IntegrityViolation` at the
# first it refuses. It runs in worker processes, so it must pickle (e.g. a module's class).
Rules = Callable[[str, Directory], Callable[[Entry], None]]


class Streams(Protocol):
    """A worker's reader of whole streams."""

    def stream(self, stream: str) -> Iterator[StreamRow]:
        """The stream's rows by seq, a page at a time."""
        ...


# How a worker opens its own `Streams` (it must pickle): a callable and its arguments.
Opener = tuple[Callable[..., Streams], tuple[Any, ...]]


class Source(Protocol):
    """A log to verify, as the checking core reads it."""

    @property
    def authority(self) -> Ed25519PublicKey:
        """The authority key every directory entry must be signed with."""
        ...

    def latest(self) -> Checkpoint:
        """The latest signed checkpoint, its signature checked with the ledger key."""
        ...

    def directory(self) -> Directory:
        """The directory's final state, its chain checked (its signatures are checked with
        every other entry)."""
        ...

    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every signed checkpoint the tree must match, by size, each checked."""
        ...

    def rows(self) -> Iterator[list[Row]]:
        """Every entry in position order, then those not sealed yet, a page at a time; raises
        `VerificationFailed` where an entry is missing or out of place."""
        ...

    def streams(self) -> Opener:
        """How a worker opens a reader of the same entries, stream by stream."""
        ...

    def name(self, stream: str) -> str:
        """A stream's id, from the name its rows give it."""
        ...

    def position(self, key: int) -> int | None:
        """The position of the row with this key (None: not sealed)."""
        ...


def fail(position: int | None, stream: str, seq: int, problem: str) -> NoReturn:
    """Stop verifying: raise `VerificationFailed` naming where and what."""
    raise VerificationFailed(Failure(position, stream, seq, problem))
