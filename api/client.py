"""The Python SDK: an identity that signs statements, an async client for every endpoint, and a
thin synchronous wrapper.

Every refusal raises an `AccordError` (or a subclass chosen by its HTTP status) carrying the
problem's stable `code`, so callers branch on codes, never on message text::

    me = Identity.from_key_file("clinic.example/accord", person_id, Path("me.pem"))
    async with AsyncClient("http://127.0.0.1:8080", token=token) as accord:
        receipt = await accord.say(me, case, "opinion.given", {...})
        plan = await accord.plan(case)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import msgspec

from api.errors import (
    AccordError,
    Forbidden,
    NotFound,
    Rejected,
    Unauthorized,
    Unavailable,
    error_from,
)
from api.schemas import ConsistencyProof, Envelope, Health, InclusionProof, LedgerInfo
from api.subscriber import Received, Verifier, follow, saved_position
from ledger import keys
from ledger.author import Author
from ledger.keys import Ed25519PrivateKey, public_key_from_b64
from ledger.receipt import Receipt
from projections.documents import AccessRow, AuditRow, Plan, Register, Trace

T = TypeVar("T")
__all__ = [
    "AccordError",
    "AsyncClient",
    "Client",
    "EventPage",
    "Forbidden",
    "Identity",
    "NotFound",
    "Received",
    "Rejected",
    "Submitted",
    "Unauthorized",
    "Unavailable",
]


class Identity:
    """A person's key, signing statements for one ledger (the key never leaves this process)."""

    def __init__(self, origin: str, person: str, key: Ed25519PrivateKey) -> None:
        self.author = Author(origin, person, key)

    @classmethod
    def from_key_file(
        cls, origin: str, person: str, path: Path, passphrase: bytes | None = None
    ) -> Identity:
        """An identity whose private key is in a 0600 PEM file."""
        return cls(origin, person, keys.load_private_key(path, passphrase))

    @property
    def person(self) -> str:
        return self.author.person

    @property
    def kid(self) -> str:
        return self.author.kid

    def sign(
        self,
        stream: str,
        kind: str,
        body: dict[str, Any],
        *,
        for_: str | None = None,
        statement_id: str | None = None,
        at: str | None = None,
    ) -> bytes:
        """A signed submission, ready for `AsyncClient.submit`."""
        return self.author.submission(
            stream, kind, body, for_=for_, statement_id=statement_id, at=at
        )


@dataclass(frozen=True)
class Submitted:
    """The receipt of a submission, and whether it created the entry (False: a repeat)."""

    receipt: Receipt
    created: bool


@dataclass(frozen=True)
class EventPage:
    """One catch-up batch as the server sent it: the events, the position to continue after
    (`Accord-Next-After`), and whether the token's scope hides some events (`Accord-Scoped`)."""

    events: list[Envelope]
    next_after: int
    scoped: bool


_POSITION = re.compile(r"^-?[0-9]{1,19}\Z")


class AsyncClient:
    """An asyncio client for every endpoint of the API."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- endpoints ---------------------------------------------------------------------------

    async def ledger(self) -> LedgerInfo:
        return await self._get("/v1/ledger", LedgerInfo)

    async def submit(self, submission: bytes) -> Submitted:
        """POST a signed submission; a repeat of an accepted one returns its first receipt."""
        status, body = await self._request(
            "POST", "/v1/statements", data=submission, content_type="application/json"
        )
        return Submitted(msgspec.json.decode(body, type=Receipt), created=status == 201)

    async def say(
        self, identity: Identity, stream: str, kind: str, body: dict[str, Any]
    ) -> Receipt:
        """Sign a statement as `identity` and submit it."""
        submitted = await self.submit(identity.sign(stream, kind, body))
        return submitted.receipt

    async def plan(self, case: str) -> Plan:
        return await self._get(f"/v1/cases/{case}/plan", Plan)

    async def audit(self, case: str) -> list[AuditRow]:
        return await self._get(f"/v1/cases/{case}/audit", list[AuditRow])

    async def register(self, case: str) -> Register:
        return await self._get(f"/v1/cases/{case}/register", Register)

    async def trace(self, case: str, decision: str) -> Trace:
        return await self._get(f"/v1/cases/{case}/decisions/{decision}/trace", Trace)

    async def access_log(self, case: str | None = None) -> list[AccessRow]:
        path = "/v1/access" + (f"?case={case}" if case else "")
        return await self._get(path, list[AccessRow])

    async def checkpoint(self) -> str:
        """The latest signed checkpoint, as its note text."""
        _, body = await self._request("GET", "/v1/checkpoint")
        return body.decode()

    async def inclusion(self, entry_hash: str, size: int | None = None) -> InclusionProof:
        query = f"?hash={entry_hash}" + (f"&size={size}" if size is not None else "")
        return await self._get(f"/v1/proof/inclusion{query}", InclusionProof)

    async def consistency(self, old: int, new: int) -> ConsistencyProof:
        return await self._get(f"/v1/proof/consistency?from={old}&to={new}", ConsistencyProof)

    async def bundle(self, case: str) -> bytes:
        """A case's evidence bundle (verify it with `accord verify --bundle`)."""
        _, body = await self._request("GET", f"/v1/cases/{case}/bundle")
        return body

    async def events(self, after: int = -1, limit: int = 1000) -> list[dict[str, Any]]:
        """One catch-up batch of CloudEvents (unverified; `subscribe` verifies)."""
        return await self._get(f"/v1/events?after={after}&limit={limit}", list[dict[str, Any]])

    async def event_page(self, after: int = -1, limit: int = 1000) -> EventPage:
        """One catch-up batch, each entry's bytes exactly as sent (unverified: a verifier reads
        the log with this)."""
        _, body, headers = await self._exchange("GET", f"/v1/events?after={after}&limit={limit}")
        events = msgspec.json.decode(body, type=list[Envelope])
        next_after = headers.get("Accord-Next-After", "")
        return EventPage(
            events,
            int(next_after) if _POSITION.match(next_after) else after,
            headers.get("Accord-Scoped") == "true",
        )

    async def subscribe(
        self, after: int = -1, position_file: Path | None = None
    ) -> AsyncIterator[Received]:
        """Every event after `after` (or after the position saved in `position_file`), verified,
        for ever: catch-up, then live, reconnecting with back-off. Raises `Untrusted` at the
        first event that does not verify. The authority key is taken from `/v1/ledger`."""
        info = await self.ledger()
        start = saved_position(position_file, after)
        verifier = Verifier(public_key_from_b64(info.authority_key), info.directory, start)
        async for received in follow(
            self._open(), self.url, self._headers, verifier, position_file
        ):
            yield received

    async def health(self) -> Health:
        return await self._get("/healthz", Health)

    async def metrics(self) -> str:
        _, body = await self._request("GET", "/metrics")
        return body.decode()

    async def openapi(self) -> dict[str, Any]:
        return await self._get("/openapi.json", dict[str, Any])

    # -- plumbing ----------------------------------------------------------------------------

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _get(self, path: str, kind: type[T]) -> T:
        _, body = await self._request("GET", path)
        return msgspec.json.decode(body, type=kind)

    async def _request(
        self, method: str, path: str, data: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        status, body, _ = await self._exchange(method, path, data, content_type)
        return status, body

    async def _exchange(
        self, method: str, path: str, data: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """Status, body and headers of a request; a problem answer raises its `AccordError`."""
        session = self._open()
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with session.request(method, self.url + path, data=data, headers=headers) as response:
            body = await response.read()
            if response.status >= 400:
                raise error_from(response.status, body)
            return response.status, body, response.headers


class Client:
    """The same client for synchronous code: each call runs on a private event loop."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self._runner = asyncio.Runner()
        self._client = AsyncClient(url, token, timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()

    def ledger(self) -> LedgerInfo:
        return self._runner.run(self._client.ledger())

    def submit(self, submission: bytes) -> Submitted:
        return self._runner.run(self._client.submit(submission))

    def say(self, identity: Identity, stream: str, kind: str, body: dict[str, Any]) -> Receipt:
        return self._runner.run(self._client.say(identity, stream, kind, body))

    def plan(self, case: str) -> Plan:
        return self._runner.run(self._client.plan(case))

    def audit(self, case: str) -> list[AuditRow]:
        return self._runner.run(self._client.audit(case))

    def register(self, case: str) -> Register:
        return self._runner.run(self._client.register(case))

    def trace(self, case: str, decision: str) -> Trace:
        return self._runner.run(self._client.trace(case, decision))

    def access_log(self, case: str | None = None) -> list[AccessRow]:
        return self._runner.run(self._client.access_log(case))

    def health(self) -> Health:
        return self._runner.run(self._client.health())

    def metrics(self) -> str:
        return self._runner.run(self._client.metrics())

    def openapi(self) -> dict[str, Any]:
        return self._runner.run(self._client.openapi())
