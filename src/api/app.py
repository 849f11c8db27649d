"""The HTTP API of DESIGN §7 as an aiohttp application over one decision record.

Reads need a bearer token (see `api.tokens`); writes are authenticated by their signature.
The ledger and the projections are synchronous, so handlers hand them to threads and the event
loop never waits on a store. A write answers once the projections include it (bounded by
`Settings.write_wait`), so a client that posts and then reads sees its own statement.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from aiohttp import web

from api.metrics import Metrics
from api.openapi import Param, Route, document
from api.problems import ApiError, problems
from api.tokens import Grant, Scope, authenticate
from domain.record import DecisionRecord
from ledger import access, bundle
from ledger.keys import public_key_b64, public_key_from_b64
from ledger.ledger import Receipt
from ledger.log import Log
from ledger.statement import MAX_SUBMISSION_BYTES
from projections.database import Database
from projections.documents import AccessRow, AuditRow, Plan, Register, Trace
from projections.follower import Follower
from projections.queries import Projections

T = TypeVar("T")
JSON = "application/json"
GRANT = web.RequestKey("grant", Grant)  # the token's grant, once authenticated (for the logs)
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class LedgerInfo(msgspec.Struct):
    """What anyone may know about the ledger: who it is, its keys, and how big it is."""

    origin: str
    authority_key: str
    ledger_key: str
    directory: str
    size: int


class InclusionProof(msgspec.Struct):
    """Leaf `index` is in the tree of `size` leaves: the audit path, standard base64."""

    index: int
    size: int
    path: list[str]


class ConsistencyProof(msgspec.Struct, rename={"from_": "from"}):
    """The tree of `to` leaves extends the tree of `from` leaves: the path, standard base64."""

    from_: int
    to: int
    path: list[str]


class Health(msgspec.Struct):
    """Liveness, and how far the projections are behind the log."""

    status: str
    leader: bool
    projections_lag: int


@dataclass(frozen=True)
class Settings:
    """Limits of the API; the defaults suit a clinic's server."""

    write_wait: float = 2.0  # how long a write waits for the projections to include it
    body_timeout: float = 10.0  # a client that has not sent its body by then is cut off
    # An idle connection, or one still sending its request line and headers, is closed after
    # this long (aiohttp's keep-alive timer also runs while headers are being received).
    idle_timeout: float = 15.0
    reader_threads: int = 4


@dataclass
class Service:
    """Everything the handlers need: the record, its projections and the follower."""

    record: DecisionRecord
    database: Database
    follower: Follower
    log: Log
    ledger_key: str
    settings: Settings = field(default_factory=Settings)
    projections: Projections = field(init=False)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.projections = Projections(self.database)
        self.metrics = Metrics(self.follower)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="accord-writer")
        self._readers = ThreadPoolExecutor(
            self.settings.reader_threads, thread_name_prefix="accord-reader"
        )
        self._caught_up = 0
        self._progress: asyncio.Event | None = None

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write in the writer thread (appends are serial in one process anyway)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking read in a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def watch_follower(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake waiting writes when the follower (in this process) commits a batch."""
        self._progress = asyncio.Event()
        self.follower.on_commit(lambda nid: loop.call_soon_threadsafe(self._advance, nid))

    def _advance(self, notification_id: int) -> None:
        self._caught_up = max(self._caught_up, notification_id)
        if self._progress is not None:
            self._progress.set()
            self._progress = asyncio.Event()

    async def caught_up(self, notification_id: int, timeout: float) -> bool:
        """Wait (bounded) until every projection includes that notification."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._caught_up < notification_id:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            progress = self._progress or asyncio.Event()
            try:
                async with asyncio.timeout(min(remaining, 0.05)):
                    await progress.wait()
            except TimeoutError:
                # The follower may run in another process: ask the database.
                self._advance(await self.read(self.follower.caught_up_to))
        return True

    def close(self) -> None:
        self._writer.shutdown()
        self._readers.shutdown()


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
    Route("GET", "/healthz", "health", "Liveness and projection lag", Health, "anyone", (503,)),
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
        service.watch_follower(asyncio.get_running_loop())

    app.on_startup.append(started)
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
        leader = self.service.follower.leading
        return _json(Health("ok", leader, lag))

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
        accepted = await service.write(service.record.submit, data)
        if accepted.created:
            service.metrics.appends.inc()
            assert accepted.notification_id is not None
            await service.caught_up(accepted.notification_id, service.settings.write_wait)
        return _json(accepted.receipt, status=201 if accepted.created else 200)

    # -- reading cases -----------------------------------------------------------------------

    async def plan(self, request: web.Request) -> web.Response:
        plan = await self._case(request, "plan")
        return _json(plan)

    async def audit(self, request: web.Request) -> web.Response:
        plan = await self._case(request, "audit")
        service = self.service

        def rows() -> list[AuditRow]:
            return service.projections.audit(plan.case, service.record.directory())

        return _json(await service.read(rows))

    async def register(self, request: web.Request) -> web.Response:
        plan = await self._case(request, "register")
        register = await self.service.read(self.service.projections.register, plan.case)
        if register is None:
            raise ApiError("not_found", "this case has no register yet")
        return _json(register)

    async def trace(self, request: web.Request) -> web.Response:
        decision = _uuid(request.match_info["decision"], "decision")
        plan = await self._case(request, f"trace {decision}")
        trace = await self.service.read(self.service.projections.trace, plan.case, decision)
        if trace is None:
            raise ApiError("not_found", "this case has no such decision")
        return _json(trace)

    async def bundle(self, request: web.Request) -> web.Response:
        plan = await self._case(request, "bundle")
        service = self.service
        key = public_key_from_b64(service.ledger_key)
        data = await service.read(bundle.export, service.record, service.log, UUID(plan.case), key)
        return web.Response(body=data, content_type=JSON)

    async def access_log(self, request: web.Request) -> web.Response:
        grant = await self._grant(request)
        if grant.scope is not Scope.ADMIN:
            raise ApiError("forbidden", "the access log is for admin tokens")
        case = request.query.get("case")
        if case is not None and not _UUID.match(case):
            raise ApiError("malformed", "case must be a lowercase hyphenated UUID")
        return _json(await self.service.read(self.service.projections.access, case))

    async def _grant(self, request: web.Request) -> Grant:
        service = self.service
        grant = await service.read(
            authenticate, service.record, request.headers.get("Authorization")
        )
        if grant is None:
            raise ApiError("unauthorized", "a valid bearer token is required")
        request[GRANT] = grant
        return grant

    async def _case(self, request: web.Request, what: str) -> Plan:
        """The case's plan, once the token may read it (a reviewer's read is recorded first)."""
        grant = await self._grant(request)
        case = _uuid(request.match_info["case"], "case")
        service = self.service
        plan = await service.read(service.projections.plan, case)
        if grant.scope is Scope.MEMBER:
            if plan is None or not _may_read(plan, grant.person):
                # The same answer whether or not the case exists: members learn nothing more.
                raise ApiError("forbidden", "this token's person is not a member of this case")
            return plan
        if grant.scope is not Scope.REVIEWER:
            raise ApiError("forbidden", f"a {grant.scope.value} token does not read cases")
        directory = await service.read(service.record.directory)
        person = directory.persons.get(grant.person)
        if person is None or not person.reviewer:
            raise ApiError("forbidden", "this token's person is no longer a reviewer")
        if plan is None:
            raise ApiError("not_found", "there is no such case")
        # Recorded before anything is served: no reviewer read goes unaccounted for.
        await service.write(
            access.record_read, service.record, grant.person, grant.token, case, what
        )
        return plan


def _may_read(plan: Plan, person: str) -> bool:
    """Active members read their case; external partners see only what sharing allows."""
    return any(
        m.person.id == person and m.left_at is None and m.role != "external_partner"
        for m in plan.members
    )


def _int(request: web.Request, name: str, required: bool = True) -> int | None:
    text = request.query.get(name)
    if text is None:
        if required:
            raise ApiError("malformed", f"{name} is required")
        return None
    if not text.isdigit() or len(text) > 18:
        raise ApiError("malformed", f"{name} must be a non-negative integer")
    return int(text)


def _b64std(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _uuid(text: str, what: str) -> str:
    if not _UUID.match(text):
        raise ApiError("not_found", f"a {what} id is a lowercase hyphenated UUID")
    return str(UUID(text))
