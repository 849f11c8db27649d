"""The followers of the log that a server keeps running: the sealer and the projection follower.

`Threads` runs them in the server's own process. `ChildProcess` (what `accord serve` uses) runs
them in a child process, `python -m api.background`, so that their work does not compete with
the request handlers and the writer for one interpreter lock: the server tells the child after
each append, and the child reports each committed batch back, and any follower that cannot
advance, over two pipes. The child stops when told to or when the server's end of the pipe
closes (the server died, however it died), never on a signal of its own: Ctrl-C reaches the
whole process group, and the server stops the child in order, after the last requests. A child
that dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from api.home import Home
from ledger.leader import Stuck
from ledger.sealer import Sealer
from projections.database import Database
from projections.follower import Follower

Report = Callable[[int], None]  # called on the event loop
_POLL = 0.1  # seconds: how often the followers look for appends another process made
_RESTART = 1.0  # seconds before a child that died is started again
_STOP = 120.0  # seconds the child has to seal what is left when the server stops


class Background(Protocol):
    """What runs the followers of one server."""

    @property
    def leading(self) -> bool:
        """Whether this server's projection follower holds the follower lock."""
        ...

    @property
    def stuck(self) -> list[Stuck]:
        """The followers that cannot advance (none, normally), and why."""
        ...

    def start(self, loop: asyncio.AbstractEventLoop, projected: Report, sealed: Report) -> None:
        """Start following; `projected(notification_id)` and `sealed(size)` run on `loop`
        after each committed batch."""
        ...

    def appended(self) -> None:
        """Wake the followers: the server appended (called in the thread that appended)."""
        ...

    def stop(self) -> None:
        """Stop following; the sealer first seals what is left."""
        ...


class Threads:
    """The followers in threads of this process."""

    def __init__(self, home: Home, store: str | None) -> None:
        self.record = home.open_ledger(store)
        self.database = Database(self.record.store)
        self.follower = Follower(self.record, self.database, cached_cases=1024)
        self.sealer = Sealer(self.record, home.ledger_key())

    @property
    def leading(self) -> bool:
        return self.follower.leading

    @property
    def stuck(self) -> list[Stuck]:
        progress = (self.follower.progress, self.sealer.progress)
        return [p.stuck for p in progress if p.stuck is not None]

    def start(self, loop: asyncio.AbstractEventLoop, projected: Report, sealed: Report) -> None:
        self.follower.on_commit(lambda nid: loop.call_soon_threadsafe(projected, nid))
        self.sealer.on_commit(lambda size: loop.call_soon_threadsafe(sealed, size))
        self.sealer.start(poll=_POLL)
        self.follower.start(poll=_POLL)

    def appended(self) -> None:
        self.record.appended_elsewhere()

    def stop(self) -> None:
        self.follower.stop()
        self.sealer.stop()
        self.sealer.log.close()
        self.database.close()
        self.record.close()


class ChildProcess:
    """The followers in a child process of this one (`python -m api.background`)."""

    def __init__(self, home: Home, store: str | None) -> None:
        self.home_path = home.path
        self.store = store
        self._process: subprocess.Popen[bytes] | None = None
        self._wake: Connection | None = None  # to the child
        self._lock = threading.Lock()  # appends come from the writer threads
        self._leading = False
        self._stuck: dict[str, Stuck] = {}  # as the child last reported, by follower
        self._stopping = False

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def stuck(self) -> list[Stuck]:
        return list(self._stuck.values())

    def start(self, loop: asyncio.AbstractEventLoop, projected: Report, sealed: Report) -> None:
        self._loop, self._projected, self._sealed = loop, projected, sealed
        self._spawn()

    def _spawn(self) -> None:
        if self._stopping:
            return
        wake_read, wake_write = os.pipe()
        report_read, report_write = os.pipe()
        command = [sys.executable, "-m", "api.background", str(self.home_path)]
        command += [str(wake_read), str(report_write)]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, pass_fds=(wake_read, report_write)
        )
        os.close(wake_read)  # the child's ends: closed here, so that each side sees the other go
        os.close(report_write)
        wake = Connection(wake_write, readable=False)
        wake.send(self.store)  # not on the command line, where anyone could read a password
        report = Connection(report_read, writable=False)
        with self._lock:
            self._process, self._wake = process, wake
        self._loop.add_reader(report.fileno(), self._receive, report)

    def _receive(self, report: Connection) -> None:
        try:
            while report.poll():
                kind, value = report.recv()
                if kind == "projected":
                    self._projected(value)
                elif kind == "sealed":
                    self._sealed(value)
                elif kind == "stuck":
                    name, stuck = value
                    if stuck is None:
                        self._stuck.pop(name, None)
                    else:
                        self._stuck[name] = stuck
                else:
                    self._leading = bool(value)
        except (EOFError, OSError):
            self._loop.remove_reader(report.fileno())
            report.close()
            self._leading = False
            self._stuck.clear()  # a new child reports afresh
            if not self._stopping:
                _log.error("the followers' process ended; starting it again")
                self._loop.call_later(_RESTART, self._spawn)

    def appended(self) -> None:
        with self._lock, contextlib.suppress(OSError):  # OSError: the child is starting again
            if self._wake is not None:
                self._wake.send(None)

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            process, wake = self._process, self._wake
            self._wake = None
        if process is None or wake is None:
            return
        with contextlib.suppress(OSError):
            wake.send("stop")
        wake.close()
        try:
            process.wait(_STOP)
        except subprocess.TimeoutExpired:
            _log.error("the followers' process did not stop in time; killing it")
            process.kill()
            process.wait()


def _child(home_path: str, wake: Connection, report: Connection) -> None:
    """The child process: follow until told to stop or until the server has gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lock = threading.Lock()

    def send(kind: str, value: object) -> None:
        with lock, contextlib.suppress(OSError):  # OSError: the server has gone
            report.send((kind, value))

    try:
        store = wake.recv()
    except EOFError:
        return
    followers = Threads(Home.load(Path(home_path)), store)
    followers.follower.on_commit(lambda nid: send("projected", nid))
    followers.sealer.on_commit(lambda size: send("sealed", size))
    for progress in (followers.follower.progress, followers.sealer.progress):
        progress.on_change(functools.partial(_report_stuck, send, progress.name))
    followers.sealer.start(poll=_POLL)
    followers.follower.start(poll=_POLL)
    leading = False
    try:
        while True:
            if wake.poll(1.0):
                while wake.poll():
                    if wake.recv() == "stop":
                        return
                followers.appended()
            if followers.leading != leading:
                leading = followers.leading
                send("leading", leading)
    except (EOFError, OSError):
        pass  # the server has gone
    finally:
        followers.stop()
        report.close()


def _report_stuck(send: Callable[[str, object], None], name: str, stuck: Stuck | None) -> None:
    send("stuck", (name, stuck))


_log = logging.getLogger(__name__)


if __name__ == "__main__":
    _child(
        sys.argv[1],
        Connection(int(sys.argv[2]), writable=False),
        Connection(int(sys.argv[3]), readable=False),
    )
