"""`accord serve`'s followers' process (`api.background.ChildProcess`): it goes when the server
goes, however the server dies, and a server whose followers' process dies starts another."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from api.client import Identity
from api.home import Home
from api.tokens import Scope, issue
from ledger import keys
from tests.api.conftest import ORIGIN
from tests.api.test_events import Subprocess, accord, free_port, get

WAIT = 15.0  # seconds: far more than a restart (one second) or an exit needs


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[tuple[Subprocess, Home]]:
    home_path = tmp_path / "home"
    accord("--home", str(home_path), "--store", store_url, "init", "--origin", ORIGIN)
    process = Subprocess(home_path, free_port(), tmp_path / "server.log")
    try:
        process.start()
        asyncio.run(process.ready())
        yield process, Home.load(home_path)
    finally:
        process.stop()


def test_the_followers_process_ends_when_the_server_is_killed(
    server: tuple[Subprocess, Home],
) -> None:
    process, _ = server
    assert process.process is not None
    follower = followers_process(process.process.pid)

    process.kill()  # SIGKILL: the server runs no code of its own on the way out

    try:
        assert until(lambda: not running(follower)), f"process {follower} outlived its server"
    finally:
        if running(follower):  # it ignores SIGTERM: leave nothing behind
            os.kill(follower, signal.SIGKILL)


def test_a_followers_process_that_dies_is_started_again_and_the_server_goes_on(
    server: tuple[Subprocess, Home],
) -> None:
    process, home = server
    assert process.process is not None
    with home.open_ledger() as record:
        authority = home.authority(record)
        lead, lead_key = authority.register("Dr Lee", "professional"), keys.generate()
        authority.bind(lead, lead_key.public_key())
        child = authority.register("Kai", "child", born="2017-01-01")
        service = issue(record, authority.register("Events", "service"), Scope.SERVICE)
        member = issue(record, lead, Scope.MEMBER)
        entries = record.size()
    server_pid = process.process.pid
    first = followers_process(server_pid)

    os.kill(first, signal.SIGKILL)

    assert followers_process(server_pid, other_than=first) > 0
    author = Identity(ORIGIN, lead, lead_key)
    case = str(uuid.uuid4())
    opened = author.sign(case, "case.opened", {"child": child, "title": "After", "lead": lead})
    assert asyncio.run(post(process.url, opened)) == 201
    # The new process seals it, and projects it: the lead reads the case's plan.
    assert until(lambda: checkpoint_size(process.url, service) == entries + 1)
    assert until(lambda: b'"After"' in plan(process.url, case, member))


# -- helpers ----------------------------------------------------------------------------------


def followers_process(server: int, other_than: int = 0) -> int:
    """The pid of the server's followers' process (`python -m api.background`), once there is
    one other than `other_than`; 0 if none appears in time."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for pid in children(server):
            if pid != other_than and running(pid) and b"api.background" in command_line(pid):
                return pid
        time.sleep(0.05)
    return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def running(pid: int) -> bool:
    """Whether the process exists and has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def until(condition: Callable[[], bool]) -> bool:
    """Whether `condition()` holds within `WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


async def post(url: str, data: bytes) -> int:
    headers = {"Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/statements", data=data, headers=headers) as response,
    ):
        return response.status


def plan(url: str, case: str, token: str) -> bytes:
    answer = asyncio.run(get(url, f"/v1/cases/{case}/plan", token))
    return answer.body if answer.status == 200 else b""


def checkpoint_size(url: str, token: str) -> int:
    answer = asyncio.run(get(url, "/v1/checkpoint", token))
    if answer.status != 200:
        return -1
    return int(answer.body.decode().split("\n")[1])
