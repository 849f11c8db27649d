"""Running the API: a process that serves HTTP and writes one JSON access line per request to
stdout, with the followers of the log (the sealer and the projection follower, which work
when they hold their locks) beside it.

Access lines hold the method, the route template, the status and timings, never a header, a
query string or a body, so no token or statement content reaches the logs; a request the HTTP
parser refuses gets a line too (with no method or route), and nothing else is logged of it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from api.app import GRANT, Service, Settings, create_app
from api.background import Background, ChildProcess, Threads
from api.home import Home
from api.refusals import REFUSED, Runner
from ledger.log import Log
from projections.database import Database
from projections.follower import Follower

ACCESS_LOGGER = "accord.access"


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON object per answered request."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        refused = request.get(REFUSED, False)
        # A refused request was never routed (its match_info would fail an assertion), and
        # its method and path are the placeholders aiohttp gives an unparsed request.
        resource = None
        if isinstance(request, web.Request) and not refused:
            resource = request.match_info.route.resource
        grant = request.get(GRANT)
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "remote": request.remote,
            "method": None if refused else request.method,
            "route": resource.canonical if resource is not None else None,
            "status": response.status,
            "ms": round(time * 1000, 3),
            "bytes": response.body_length,
            "token": grant.token if grant is not None else None,
        }
        if "Accord-Problem" in response.headers:
            line["problem"] = response.headers["Accord-Problem"]
        self.logger.info(orjson.dumps(line).decode())


@dataclass
class Running:
    """A started server: where it listens and what it serves."""

    url: str
    service: Service


@asynccontextmanager
async def running(
    home: Home,
    store: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: Settings | None = None,
    follow: bool = True,
    child: bool = False,
) -> AsyncIterator[Running]:
    """Serve the home's ledger until the block ends (port 0 picks a free port).

    With `follow`, the sealer and the projection follower run beside the handlers: in threads
    of this process, or with `child` in a child process (see `api.background`).
    """
    record = home.open_ledger(store)
    database = Database(record.store)
    background: Background | None = None
    if follow:
        background = ChildProcess(home, store) if child else Threads(home, store)
    service = Service(
        record,
        database,
        Follower(record, database),
        Log(record),
        home.config.ledger_key,
        settings or Settings(),
        background,
    )
    runner = Runner(
        create_app(service),
        keepalive_timeout=service.settings.idle_timeout,
        # After an early answer (413, 408) the unread rest of a body is drained this long at
        # most, so the client can read the answer, and then the connection is closed.
        lingering_time=2.0,
        access_log_class=JsonAccessLogger,
        access_log=logging.getLogger(ACCESS_LOGGER),
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        yield Running(f"http://{_host(bound[0])}:{bound[1]}", service)
    finally:
        await runner.cleanup()
        service.close()
        service.log.close()
        database.close()
        record.close()


def serve(
    home: Home,
    store: str | None,
    host: str,
    port: int,
    ready: Callable[[Running], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; `ready` runs (in a thread) once the server listens."""
    _log_access_to_stdout()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running(home, store, host, port, child=True) as server:
            if ready is not None:
                await asyncio.to_thread(ready, server)
            await stop.wait()

    asyncio.run(main())


def _log_access_to_stdout() -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
