"""The HTTP API (README, HTTP API) as an aiohttp application over one decision record.

Reads need a bearer token (see `api.tokens`); writes are authenticated by their signature.
The ledger and the projections are synchronous, so handlers hand them to threads and the event
loop never waits on a store. A write answers once the projections include it (bounded by
`Settings.write_wait`), so a client that posts and then reads sees its own statement.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import itertools
import logging
import queue
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from aiohttp import web

from api.background import Background
from api.events import BATCH, Event, Feed, Visibility, event
from api.metrics import Metrics
from api.openapi import Param, Route, document
from api.problems import ApiError, problems
from api.schemas import (
    AppointmentView,
    ConsistencyProof,
    DirectoryView,
    Health,
    InclusionProof,
    KeyView,
    LedgerInfo,
    OrganisationView,
    PersonView,
    StuckView,
)
from api.tokens import Grant, Scope, authenticate
from domain.named import named
from domain.record import DecisionRecord
from ledger import access as access_records
from ledger import bundle
from ledger.errors import LedgerError, Unavailable
from ledger.keys import public_key_b64, public_key_from_b64
from ledger.leader import Stuck
from ledger.ledger import Accepted
from ledger.log import Log, SealedEntry
from ledger.receipt import Receipt
from ledger.statement import MAX_SUBMISSION_BYTES
from projections.database import Database
from projections.documents import AccessRow, AuditRow, MemberView, Plan, Register, Trace
from projections.follower import Follower
from projections.queries import Projections

T = TypeVar("T")
JSON = "application/json"
_GROUP = 64  # at most this many submissions share a transaction
_POLL = 0.05  # seconds without news from the followers before a waiting write asks the store
GRANT = web.RequestKey("grant", Grant)  # the token's grant, once authenticated (for the logs)
_FEED_TASK = web.AppKey("feed", asyncio.Task[None])
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Limits of the API; the defaults suit a clinic's server."""

    write_wait: float = 2.0  # how long a write waits for the projections to include it
    body_timeout: float = 10.0  # a client that has not sent its body by then is cut off
    # An idle connection, or one still sending its request line and headers, is closed after
    # this long (aiohttp's keep-alive timer also runs while headers are being received).
    idle_timeout: float = 15.0
    reader_threads: int = 4
    heartbeat: float = 15.0  # an idle event stream sends a comment this often
    # A live subscriber that cannot take an event within this long is disconnected (it resumes
    # by catch-up): a slow reader never holds up others or grows the server's memory.
    send_timeout: float = 5.0


@dataclass
class Service:
    """Everything the handlers need: the record, its projections and the follower."""

    record: DecisionRecord
    database: Database
    follower: Follower  # asked how far the projections are; `background` runs the follower
    log: Log
    ledger_key: str
    settings: Settings = field(default_factory=Settings)
    background: Background | None = None
    projections: Projections = field(init=False)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.feed: Feed
        self.tokens = access_records.TokenBook(self.record)
        self.projections = Projections(self.database)
        self.metrics = Metrics(self.follower, self.stuck)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="accord-writer")
        self._readers = ThreadPoolExecutor(
            self.settings.reader_threads, thread_name_prefix="accord-reader"
        )
        self._caught_up = 0  # the notification id every projection includes, as last heard
        self._heard = 0.0  # when that was (loop time)
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap of writes
        self._tickets = itertools.count()
        self._poller: asyncio.Task[None] | None = None
        self._queue: queue.SimpleQueue[tuple[bytes, asyncio.Future[Accepted]] | None]
        self._queue = queue.SimpleQueue()
        self._committer: threading.Thread | None = None

    def stuck(self) -> list[Stuck]:
        """The followers that cannot advance, as the process running them last said."""
        return [] if self.background is None else self.background.stuck

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write in the writer thread (appends are serial in one process anyway)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def submit(self, data: bytes) -> Accepted:
        """Submit a statement through the group-commit writer: submissions that arrive while
        it is busy are appended together, in one transaction, when it is free."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.put((data, future))
        return await future

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the followers and the group-commit writer; follow their progress on `loop`."""
        if self.background is not None:
            self.record.on_append(self.background.appended)
            self.background.start(loop, self._advance, lambda size: self.feed.sealed(size))
        self._committer = threading.Thread(
            target=self._commit_groups, args=(loop,), name="accord-committer", daemon=True
        )
        self._committer.start()

    def _commit_groups(self, loop: asyncio.AbstractEventLoop) -> None:
        while (first := self._queue.get()) is not None:
            group = [first]
            while len(group) < _GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(item)
            answers: list[Accepted | LedgerError]
            try:
                answers = self.record.submit_many([data for data, _ in group])
            except Exception:
                # `submit_many` answers each statement, whatever fails; should it fail itself,
                # no statement is answered for another's failure: each is tried alone.
                _log.exception("a group of %d statements could not be submitted", len(group))
                answers = [self._submit_alone(data) for data, _ in group]
            loop.call_soon_threadsafe(_settle, [future for _, future in group], answers)

    def _submit_alone(self, data: bytes) -> Accepted | LedgerError:
        try:
            return self.record.submit_many([data])[0]
        except Exception:
            _log.exception("a statement could not be submitted")
            return Unavailable(
                "the statement could not be judged, and whether it was recorded is not known;"
                " sending it again is safe"
            )

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking read in a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    async def look_up(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a few primary-key reads: on SQLite at once, on the event loop; on PostgreSQL (a
        network round trip each) in a reader thread.

        A SQLite read in WAL mode never waits for a writer, and a key lookup takes tens of
        microseconds: less than handing it to a thread and back, and waiting there for the GIL.
        Every case read and every token check is one of these.
        """
        if self.database.postgres:
            return await self.read(fn, *args)
        return fn(*args)

    def _advance(self, notification_id: int) -> None:
        """The projections include `notification_id` (called on the loop): wake the writes
        waiting for it, and only those."""
        self._caught_up = max(self._caught_up, notification_id)
        self._heard = asyncio.get_running_loop().time()
        waiting = self._waiting
        while waiting and waiting[0][0] <= self._caught_up:
            future = heapq.heappop(waiting)[2]
            if not future.done():
                future.set_result(None)

    async def caught_up(self, notification_id: int, timeout: float) -> bool:
        """Wait (bounded) until every projection includes that notification."""
        if self._caught_up >= notification_id:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (notification_id, next(self._tickets), future))
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            future.cancel()
            return False
        return True

    async def _poll(self) -> None:
        """While writes wait and the followers have said nothing for a while (they may run in
        a process that does not report to this one), ask the database how far they are."""
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                await asyncio.sleep(_POLL)
                if self._waiting and loop.time() - self._heard >= _POLL:
                    self._advance(await self.read(self.follower.caught_up_to))
        finally:
            self._poller = None

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._committer is not None:
            self._queue.put(None)
            self._committer.join()
        if self.background is not None:
            self.background.stop()
        self._writer.shutdown()
        self._readers.shutdown()
        self.tokens.close()


def _settle(futures: list[asyncio.Future[Accepted]], answers: list[Accepted | LedgerError]) -> None:
    for future, answer in zip(futures, answers, strict=True):
        if future.done():  # the client went away
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_READ = (401, 403, 404)
ROUTES = (
    Route("GET", "/v1/ledger", "ledger", "Origin, public keys and size", LedgerInfo, "anyone"),
    Route(
        "POST",
        "/v1/statements",
        "submit",
        "Submit a signed statement: 201 with its receipt, 200 for an idempotent repeat",
        Receipt,
        "signature",
        (400, 408, 409, 413, 415, 422, 503),
    ),
    Route(
        "GET",
        "/v1/cases/{case}/plan",
        "plan",
        "A case's current plan",
        Plan,
        "member, reviewer",
        _READ,
    ),
    Route(
        "GET",
        "/v1/cases/{case}/audit",
        "audit",
        "Every entry of a case: who, role, on behalf of, what, when, hash, signature status",
        list[AuditRow],
        "member, reviewer",
        _READ,
    ),
    Route(
        "GET",
        "/v1/cases/{case}/register",
        "register",
        "A case's consents and information sharing",
        Register,
        "member, reviewer",
        _READ,
    ),
    Route(
        "GET",
        "/v1/cases/{case}/decisions/{decision}/trace",
        "trace",
        "How a decision was reached",
        Trace,
        "member, reviewer",
        _READ,
    ),
    Route(
        "GET",
        "/v1/cases/{case}/bundle",
        "bundle",
        "Evidence bundle for offline verification (format accord.bundle.v1, see the README)",
        JSON,
        "member, reviewer",
        _READ,
    ),
    Route(
        "GET",
        "/v1/events",
        "events",
        "Catch-up: sealed entries after position `after` as a CloudEvents batch; the"
        " Accord-Next-After header says where to continue",
        BATCH,
        "service",
        (400, 401, 403),
        (Param("after", "position"), Param("limit", "int")),
    ),
    Route(
        "GET",
        "/v1/events/live",
        "live",
        "Server-Sent Events: `id:` = position, `data:` = the CloudEvent; resumes after"
        " Last-Event-ID (or `after`); a comment every 15 s",
        "text/event-stream",
        "service",
        (400, 401, 403),
        (Param("after", "position"),),
    ),
    Route(
        "GET",
        "/v1/directory",
        "directory",
        "Everyone in the directory with their keys and each key's validity window, their"
        " appointments as reviewer or administrator, and the registered organisations",
        DirectoryView,
        "admin",
        (401, 403),
    ),
    Route(
        "GET",
        "/v1/access",
        "access_log",
        "Recorded reads (who read which case, when, with which token), optionally of one case",
        list[AccessRow],
        "admin",
        (400, 401, 403),
        (Param("case"),),
    ),
    Route(
        "GET",
        "/v1/checkpoint",
        "checkpoint",
        "The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)",
        "text/plain",
        "anyone",
        (404,),
    ),
    Route(
        "GET",
        "/v1/proof/inclusion",
        "inclusion",
        "RFC 9162 inclusion proof of the entry with this hash in the tree of `size` entries"
        " (default: the latest checkpoint)",
        InclusionProof,
        "anyone",
        (400, 404),
        (Param("hash", "sha256", required=True), Param("size", "int")),
    ),
    Route(
        "GET",
        "/v1/proof/consistency",
        "consistency",
        "RFC 9162 consistency proof between two tree sizes",
        ConsistencyProof,
        "anyone",
        (400, 404),
        (Param("from", "int", required=True), Param("to", "int", required=True)),
    ),
    Route(
        "GET",
        "/healthz",
        "health",
        "Liveness, projection lag, followers that cannot advance",
        Health,
        "anyone",
        (503,),
    ),
    Route("GET", "/metrics", "metrics", "Prometheus metrics", "text/plain", "anyone"),
    Route("GET", "/openapi.json", "openapi", "This description (OpenAPI 3.1)", JSON, "anyone"),
)


def create_app(service: Service) -> web.Application:
    """The aiohttp application serving one decision record."""
    app = web.Application(
        client_max_size=MAX_SUBMISSION_BYTES,
        middlewares=[service.metrics.middleware, problems],
    )
    handlers = _Handlers(service)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, getattr(handlers, route.name))

    async def started(app: web.Application) -> None:
        service.feed = Feed(service.record.origin)
        service.start(asyncio.get_running_loop())
        head = await service.read(service.log.size) - 1

        async def read(after: int) -> list[SealedEntry]:
            return await service.read(service.log.entries, after, 1000)

        async def size() -> int:
            return await service.read(service.log.size)

        app[_FEED_TASK] = asyncio.create_task(service.feed.run(read, size, head))

    async def stopping(app: web.Application) -> None:
        service.feed.close()

    async def stopped(app: web.Application) -> None:
        app[_FEED_TASK].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app[_FEED_TASK]

    app.on_startup.append(started)
    app.on_shutdown.append(stopping)
    app.on_cleanup.append(stopped)
    return app


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type=JSON)


class _Handlers:
    def __init__(self, service: Service) -> None:
        self.service = service

    # -- anyone --------------------------------------------------------------------------------

    async def ledger(self, request: web.Request) -> web.Response:
        service = self.service
        record = service.record
        checkpoint = await service.read(service.log.checkpoint)
        return _json(
            LedgerInfo(
                origin=record.origin,
                authority_key=public_key_b64(record.authority_key),
                ledger_key=service.ledger_key,
                directory=str(record.directory_id),
                size=checkpoint.size if checkpoint else 0,
            )
        )

    async def checkpoint(self, request: web.Request) -> web.Response:
        checkpoint = await self.service.read(self.service.log.checkpoint)
        if checkpoint is None:
            raise ApiError("not_found", "no checkpoint has been signed yet")
        return web.Response(text=checkpoint.note, content_type="text/plain")

    async def inclusion(self, request: web.Request) -> web.Response:
        log = self.service.log
        entry_hash = request.query.get("hash", "")
        if not _SHA256.match(entry_hash):
            raise ApiError("malformed", "hash must be an entry hash: 64 lowercase hex digits")
        size = _int(request, "size", required=False)

        def prove() -> InclusionProof:
            position = log.position(entry_hash)
            if position is None:
                raise ApiError("not_found", "no sealed entry has this hash")
            tree = size
            if tree is None:
                latest = log.checkpoint()
                tree = latest.size if latest else 0
            path = log.inclusion(position, tree)
            return InclusionProof(position, tree, [_b64std(node) for node in path])

        return _json(await self.service.read(prove))

    async def consistency(self, request: web.Request) -> web.Response:
        old, new = _int(request, "from"), _int(request, "to")
        assert old is not None and new is not None
        path = await self.service.read(self.service.log.consistency, old, new)
        return _json(ConsistencyProof(old, new, [_b64std(node) for node in path]))

    async def health(self, request: web.Request) -> web.Response:
        lag = await self.service.read(self.service.metrics.lag)
        background = self.service.background
        leader = background is not None and background.leading
        stuck = [
            StuckView(s.follower, s.position, s.error, s.failures) for s in self.service.stuck()
        ]
        return _json(Health("degraded" if stuck else "ok", leader, lag, stuck))

    async def metrics(self, request: web.Request) -> web.Response:
        body = await self.service.read(self.service.metrics.render)
        return web.Response(body=body, headers={"Content-Type": self.service.metrics.content_type})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(document(ROUTES))

    # -- writing -----------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        service = self.service
        if request.content_type != JSON:
            raise ApiError("unsupported_media_type", f"send the submission as {JSON}")
        if request.content_length is not None and request.content_length > MAX_SUBMISSION_BYTES:
            raise ApiError("too_large", f"a submission may be at most {MAX_SUBMISSION_BYTES} bytes")
        try:
            async with asyncio.timeout(service.settings.body_timeout):
                data = await request.read()
        except TimeoutError:
            raise ApiError("timeout", "the request body did not arrive in time") from None
        accepted = await service.submit(data)
        if accepted.created:
            service.metrics.appends.inc()
            assert accepted.notification_id is not None
            await service.caught_up(accepted.notification_id, service.settings.write_wait)
        return _json(accepted.receipt, status=201 if accepted.created else 200)

    # -- reading cases -----------------------------------------------------------------------

    async def plan(self, request: web.Request) -> web.Response:
        allowed = await self._case(request, "plan")
        return web.Response(body=allowed.plan, content_type=JSON)

    async def audit(self, request: web.Request) -> web.Response:
        allowed = await self._case(request, "audit")
        service = self.service

        def rows() -> list[AuditRow]:
            return service.projections.audit(allowed.case, service.record.directory())

        return _json(await service.read(rows))

    async def register(self, request: web.Request) -> web.Response:
        allowed = await self._case(request, "register")
        register = await self.service.read(self.service.projections.register, allowed.case)
        if register is None:
            raise ApiError("not_found", "this case has no register yet")
        return _json(register)

    async def trace(self, request: web.Request) -> web.Response:
        await self._grant(request)  # a token first, before any id is looked at
        decision = _uuid(request.match_info["decision"], "decision")
        allowed = await self._case(request, f"trace {decision}")
        trace = await self.service.read(self.service.projections.trace, allowed.case, decision)
        if trace is None:
            raise ApiError("not_found", "this case has no such decision")
        return _json(trace)

    async def bundle(self, request: web.Request) -> web.Response:
        allowed = await self._case(request, "bundle")
        service = self.service
        key = public_key_from_b64(service.ledger_key)
        case = UUID(allowed.case)
        data = await service.read(bundle.export, service.record, service.log, case, key, named)
        return web.Response(body=data, content_type=JSON)

    # -- the event stream --------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        grant = await self._service_grant(request)
        after = _after(request)
        asked = _int(request, "limit", required=False)
        limit = min(1000 if asked is None else asked, _MAX_BATCH)
        visible, last = await self.service.read(self._batch, grant, after, limit)
        body = b"[" + b",".join(item.cloudevent for item in visible) + b"]"
        # Scoped batches may hide events: the next `after` says where this one stopped.
        headers = {"Accord-Next-After": str(last), "Accord-Scoped": _scoped(grant)}
        return web.Response(body=body, content_type=BATCH, headers=headers)

    def _batch(self, grant: Grant, after: int, limit: int) -> tuple[list[Event], int]:
        service = self.service
        upto = self._scoped_upto(grant)
        sealed = service.log.entries(after, limit, upto)
        items = [event(service.record.origin, s) for s in sealed]
        return self._visible(grant, items), (sealed[-1].position if sealed else after)

    def _visible(self, grant: Grant, items: list[Event]) -> list[Event]:
        if grant.organisation is None:
            return items
        visibility = Visibility(
            grant.organisation, str(self.service.record.directory_id), self.service.projections
        )
        return visibility.view(items)

    def _scoped_upto(self, grant: Grant) -> int | None:
        """How far a scoped subscriber may read: no further than the projections know."""
        if grant.organisation is None:
            return None
        return self.service.log.last_position_upto(self.service.follower.caught_up_to())

    async def live(self, request: web.Request) -> web.StreamResponse:
        grant = await self._service_grant(request)
        service = self.service
        feed = service.feed
        after = _after(request, default=feed.head)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Accord-Scoped": _scoped(grant),
            }
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        beat = loop.time() + service.settings.heartbeat
        feed.listeners += 1
        try:
            while True:
                items = feed.recent(after)
                if items is None:  # behind the ring: catch up from the store
                    items = await service.read(self._read_after, after)
                if grant.organisation is not None and items:
                    upto = await service.read(self._scoped_upto, grant)
                    items = [i for i in items if upto is None or i.position <= upto]
                if items:
                    shown = (
                        items
                        if grant.organisation is None
                        else await service.read(self._visible, grant, items)
                    )
                    if shown:
                        await self._send(request, response, b"".join(i.frame for i in shown))
                    after = items[-1].position
                    continue
                if feed.closed or request.transport is None or request.transport.is_closing():
                    break  # the server is stopping, or the subscriber has gone
                remaining = beat - loop.time()
                if remaining <= 0:
                    await self._send(request, response, b": heartbeat\n\n")
                    beat = loop.time() + service.settings.heartbeat
                    continue
                # A scoped subscriber also waits for the projections: look again soon; anyone
                # looks at least every second whether they are still connected.
                await feed.wait(min(remaining, 0.1 if grant.organisation else 1.0))
        except (ConnectionResetError, _SlowSubscriber):
            pass
        finally:
            feed.listeners -= 1
        return response

    def _read_after(self, after: int) -> list[Event]:
        sealed = self.service.log.entries(after, 1000)
        return [event(self.service.record.origin, s) for s in sealed]

    async def _send(self, request: web.Request, response: web.StreamResponse, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.service.settings.send_timeout):
                await response.write(data)
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()  # close() would wait to send what it has not taken
            raise _SlowSubscriber from None

    async def _service_grant(self, request: web.Request) -> Grant:
        grant = await self._grant(request)
        if grant.scope is not Scope.SERVICE:
            raise ApiError("forbidden", "the event stream is for service tokens")
        return grant

    async def directory(self, request: web.Request) -> web.Response:
        await self._admin(request)
        directory = await self.service.read(self.service.record.directory)
        people = [
            PersonView(
                id=person.id,
                name=person.name,
                kind=person.kind,
                keys=[
                    KeyView(
                        kid=record.kid,
                        bound_at=record.bound_at,
                        revoked_at=record.revoked_at,
                        compromised_since=record.compromised_since,
                        reason=record.reason,
                    )
                    for record in (directory.keys[k] for k in person.keys)
                ],
                profession=person.profession,
                organisation=person.organisation,
                reviewer=person.reviewer,
                administrator=person.administrator,
                appointments=[
                    AppointmentView(term.role, term.since, term.until, term.reason)
                    for term in person.appointments
                ],
            )
            for person in directory.persons.values()
        ]
        organisations = [
            OrganisationView(o.id, o.name, o.registered_at)
            for o in directory.organisations.values()
        ]
        return _json(DirectoryView(people, organisations))

    async def _admin(self, request: web.Request) -> Grant:
        grant = await self._grant(request)
        if grant.scope is not Scope.ADMIN:
            raise ApiError("forbidden", "this is for admin tokens")
        return grant

    async def access_log(self, request: web.Request) -> web.Response:
        await self._admin(request)
        case = request.query.get("case")
        if case is not None and not _UUID.match(case):
            raise ApiError("malformed", "case must be a lowercase hyphenated UUID")
        return _json(await self.service.read(self.service.projections.access, case))

    async def _grant(self, request: web.Request) -> Grant:
        """The request's token grant (checked once per request), or 401."""
        known: Grant | None = request.get(GRANT)
        if known is not None:
            return known
        service = self.service
        grant = await service.look_up(
            authenticate, service.tokens, request.headers.get("Authorization")
        )
        if grant is None:
            raise ApiError("unauthorized", "a valid bearer token is required")
        request[GRANT] = grant
        return grant

    async def _case(self, request: web.Request, what: str) -> _Access:
        """The case, once the token may read it (a reviewer's read is recorded first).

        Token, case and membership are checked in one look-up.
        """
        service = self.service
        header = request.headers.get("Authorization")
        case = request.match_info["case"]
        access = await service.look_up(self._authorise, request, header, case)
        grant = access.grant
        if grant.scope is Scope.REVIEWER:
            # Recorded before anything is served: no reviewer read goes unaccounted for.
            await service.write(
                access_records.record_read,
                service.record,
                grant.person,
                grant.token,
                access.case,
                what,
            )
        return access

    def _authorise(self, request: web.Request, header: str | None, case_text: str) -> _Access:
        service = self.service
        grant: Grant | None = request.get(GRANT) or authenticate(service.tokens, header)
        if grant is None:
            raise ApiError("unauthorized", "a valid bearer token is required")
        request[GRANT] = grant
        case = _uuid(case_text, "case")
        plan = service.projections.plan_document(case)
        if grant.scope is Scope.MEMBER:
            if plan is None or not _may_read(plan, grant.person):
                # The same answer whether or not the case exists: members learn nothing more.
                raise ApiError("forbidden", "this token's person is not a member of this case")
            return _Access(grant, case, plan)
        if grant.scope is not Scope.REVIEWER:
            scope = grant.scope.value
            article = "an" if scope[0] in "aeiou" else "a"
            raise ApiError("forbidden", f"{article} {scope} token does not read cases")
        person = service.record.directory().persons.get(grant.person)
        if person is None or not person.reviewer:
            raise ApiError("forbidden", "this token's person is no longer a reviewer")
        if plan is None:
            raise ApiError("not_found", "there is no such case")
        return _Access(grant, case, plan)


@dataclass(frozen=True)
class _Access:
    """A case read that has been allowed: who, which case, and its stored plan document."""

    grant: Grant
    case: str
    plan: bytes


class _Members(msgspec.Struct):
    """Just the members of a stored plan (decoding the rest would be wasted)."""

    members: list[MemberView]


_members = msgspec.json.Decoder(_Members).decode


def _may_read(plan: bytes, person: str) -> bool:
    """Active members read their case; external partners see only what sharing allows."""
    return any(
        m.person.id == person and m.left_at is None and m.role != "external_partner"
        for m in _members(plan).members
    )


def _scoped(grant: Grant) -> str:
    """Whether the stream is limited by consent (the subscriber then sees only some events)."""
    return "true" if grant.organisation is not None else "false"


class _SlowSubscriber(Exception):
    """A live subscriber stopped taking events."""


_MAX_BATCH = 10_000


def _after(request: web.Request, default: int = -1) -> int:
    """The position to continue after: `Last-Event-ID` (live), `after`, or `default`."""
    text = request.headers.get("Last-Event-ID", request.query.get("after"))
    if text is None:
        return default
    if text == "-1":
        return -1
    return _number(text, "after")


def _int(request: web.Request, name: str, required: bool = True) -> int | None:
    text = request.query.get(name)
    if text is None:
        if required:
            raise ApiError("malformed", f"{name} is required")
        return None
    return _number(text, name)


def _number(text: str, name: str) -> int:
    # ASCII digits only: str.isdigit() also takes superscripts and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError("malformed", f"{name} must be a non-negative integer")
    return int(text)


def _b64std(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _uuid(text: str, what: str) -> str:
    if not _UUID.match(text):
        raise ApiError("not_found", f"a {what} id is a lowercase hyphenated UUID")
    return str(UUID(text))
