"""Leadership: exactly one process per ledger runs a given follower (the sealer, the projection
workers). On PostgreSQL a session-level advisory lock elects it; on SQLite a file lock beside
the ledger. Either is released when the process dies, so another can take over."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ledger.errors import LedgerError
from ledger.store import Store, connect

_DESCRIBED = 300  # characters at most in a failure's description


class Leadership:
    """A named lock per ledger, held for as long as this process leads."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self._held: Any = None

    @property
    def held(self) -> bool:
        return self._held is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True if this process now leads."""
        if self._held is not None:
            return True
        store = self.store
        if store.is_postgres:
            conn = connect(store, autocommit=True)
            schema = store.env.get("POSTGRES_SCHEMA", "public")
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_key(self.name), schema)
            ).fetchone()
            if row is None or not row[0]:
                conn.close()
                return False
            self._held = conn  # the lock lives as long as this session
            return True
        path = Path(f"{store.env['SQLITE_DBNAME']}.{self.name}.lock")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        handle: IO[bytes] = os.fdopen(os.open(path, flags, 0o600), "ab")  # held while leading
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._held = handle
        return True

    def release(self) -> None:
        """Let go, so another process can lead."""
        if self._held is not None:
            self._held.close()
            self._held = None


@dataclass(frozen=True)
class Stuck:
    """A follower that cannot advance: the position it has reached, why the next step fails
    (one line, safe to show anyone) and how many times in a row it has failed."""

    follower: str
    position: int
    error: str
    failures: int


def describe(exc: BaseException) -> str:
    """A one-line description of a failure that is safe to show anyone: a `LedgerError`'s
    code and detail (our own words, which hold no secrets); of anything else only its type,
    since a driver's message may quote a connection string or a row."""
    if isinstance(exc, LedgerError):
        text = f"{exc.code}: {exc.detail}"
    else:
        text = f"{type(exc).__name__} (details in the server's log)"
    line = " ".join(text.split())
    return line if len(line) <= _DESCRIBED else line[: _DESCRIBED - 1] + "…"


class Progress:
    """Whether a follower is advancing, for health checks: `stuck` is None while it is, and
    says where and why while its steps keep failing; listeners hear each change."""

    def __init__(self, name: str, position: Callable[[], int]) -> None:
        self.name = name
        self._position = position
        self._last = 0  # the last position read, for when the store cannot be read at all
        self.stuck: Stuck | None = None
        self._listeners: list[Callable[[Stuck | None], object]] = []

    def on_change(self, callback: Callable[[Stuck | None], object]) -> None:
        """Call `callback(stuck)` whenever the follower gets stuck, fails again, or recovers."""
        self._listeners.append(callback)

    def failed(self, exc: BaseException, failures: int) -> None:
        """The follower's step failed for the `failures`th time in a row."""
        with contextlib.suppress(Exception):  # the store may be what fails: say where it was
            self._last = self._position()
        self._tell(Stuck(self.name, self._last, describe(exc), failures))

    def advanced(self) -> None:
        """The follower's step succeeded."""
        if self.stuck is not None:
            self._tell(None)

    def _tell(self, stuck: Stuck | None) -> None:
        self.stuck = stuck
        for callback in self._listeners:
            callback(stuck)


def lead_and_follow(
    leadership: Leadership,
    step: Callable[[], int],
    stop: threading.Event,
    wake: threading.Event,
    idle: float,
    led: Callable[[], None] = lambda: None,
    progress: Progress | None = None,
) -> None:
    """A follower's background loop: wait until this process leads (then call `led`), and call
    `step` until `stop` is set, waiting on `wake` (at most `idle` seconds) when it did nothing.

    A step either committed whole or not at all, so a failing one is logged, reported to
    `progress` (health checks then say the follower is stuck, and where) and retried with
    exponential back-off.
    """
    while not stop.is_set() and not leadership.try_acquire():
        stop.wait(1.0)
    led()
    failures = 0
    while not stop.is_set():
        wake.clear()
        try:
            done = step()
        except Exception as exc:
            failures += 1
            _log.exception("%s failed (attempt %d); retrying", leadership.name, failures)
            if progress is not None:
                progress.failed(exc, failures)
            stop.wait(min(30.0, 0.1 * 2**failures))
            continue
        failures = 0
        if progress is not None:
            progress.advanced()
        if not done:
            wake.wait(idle)


_log = logging.getLogger(__name__)


def _key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF
