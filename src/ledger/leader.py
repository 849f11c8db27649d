"""Leadership: exactly one process per ledger runs a given follower (the sealer, the projection
workers). On PostgreSQL a session-level advisory lock elects it; on SQLite a file lock beside
the ledger. Either is released when the process dies, so another can take over."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ledger.store import Store, connect


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


def lead_and_follow(
    leadership: Leadership,
    step: Callable[[], int],
    stop: threading.Event,
    wake: threading.Event,
    idle: float,
    led: Callable[[], None] = lambda: None,
) -> None:
    """A follower's background loop: wait until this process leads (then call `led`), and call
    `step` until `stop` is set, waiting on `wake` (at most `idle` seconds) when it did nothing.

    A step either committed whole or not at all, so a failing one is logged and retried with
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
        except Exception:
            failures += 1
            _log.exception("%s failed (attempt %d); retrying", leadership.name, failures)
            stop.wait(min(30.0, 0.1 * 2**failures))
            continue
        failures = 0
        if not done:
            wake.wait(idle)


_log = logging.getLogger(__name__)


def _key(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF
