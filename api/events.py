"""The event stream for subscribing services: sealed entries as CloudEvents 1.0, in position
order, as catch-up batches and as live Server-Sent Events, each subscriber seeing only what its
token's scope allows.

A service token without an organisation sees every event. One limited to an organisation (by
its registered id) sees a case's events only while a sharing consent naming that organisation
is in force (given, not withdrawn, not past its `until` date), only of the statement families
the consent lists, and, when the consent names a decision, only the entries whose body names
that decision (an entry of no decision is not covered); it also sees the consent statements
themselves, so a case's first visible event says plainly that sharing began, and the withdrawal
that ends it. Of the directory it sees what checking signatures needs and nothing more: key
bindings (a person id and a public key) as they are, and each revocation as an
`accord.key.revocation` notice (`revocation`) that leaves out the reason a revocation states;
who people are it never sees. Scoped delivery never runs ahead of the projections, so a
withdrawal is always known before anything recorded after it could be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import orjson

from api.schemas import REVOCATION
from domain.bodies import SharingScope
from ledger.clock import normalise
from ledger.log import SealedEntry
from projections.documents import Register
from projections.queries import Projections

BATCH = "application/cloudevents-batch+json"
_PUBLIC_DIRECTORY_KINDS = frozenset({"key.bound", "key.revoked"})


@dataclass(frozen=True)
class Event:
    """One sealed entry, read once, with its CloudEvent bytes."""

    position: int
    stream: str
    kind: str
    recorded_at: str
    body: dict[str, object]
    hash: str
    cloudevent: bytes

    @property
    def frame(self) -> bytes:
        """The event as one Server-Sent Events message."""
        return b"id: %d\ndata: %s\n\n" % (self.position, self.cloudevent)


def event(origin: str, sealed: SealedEntry) -> Event:
    """The CloudEvent of a sealed entry (docs/formats.md); `data` is the entry, byte for byte."""
    entry = orjson.loads(sealed.data)
    statement = entry["statement"]
    document = {
        "specversion": "1.0",
        "id": statement["id"],
        "source": origin,
        "type": f"accord.{statement['kind']}",
        "subject": sealed.stream,
        "time": entry["recorded_at"],
        "datacontenttype": "application/json",
        "sequence": str(sealed.position),
        "entryhash": sealed.hash,
        "data": orjson.Fragment(sealed.data),
    }
    return Event(
        sealed.position,
        sealed.stream,
        statement["kind"],
        entry["recorded_at"],
        statement["body"],
        sealed.hash,
        orjson.dumps(document),
    )


def revocation(item: Event) -> Event:
    """A key revocation as an organisation-scoped subscriber sees it: a CloudEvent of type
    `accord.key.revocation` whose `data` is the key id, when it was revoked, since when it is
    compromised (or null) and the entry's hash, not the signed entry with its free-text reason.

    Its attributes are the entry's event's, so `entryhash` and `sequence` still name the entry
    (whose inclusion `/v1/proof/inclusion` proves to whoever holds it)."""
    since = item.body.get("compromised_since")
    data = {
        "kid": item.body["kid"],
        "revoked_at": item.recorded_at,
        "compromised_since": normalise(since) if isinstance(since, str) else None,
        "entryhash": item.hash,
    }
    document = orjson.loads(item.cloudevent)
    document.update(type=REVOCATION, data=data)
    return replace(item, body=data, cloudevent=orjson.dumps(document))


@dataclass
class _Window:
    given_at: str
    withdrawn_at: str | None
    until: str
    families: frozenset[str]
    decision: str | None  # a consent that names a decision covers only that decision's entries


@dataclass
class Visibility:
    """Which events one subscriber may see; caches each case's sharing windows briefly."""

    organisation: str | None
    directory: str
    projections: Projections
    _windows: dict[str, tuple[list[_Window], set[str]]] = field(default_factory=dict)

    def view(self, items: list[Event]) -> list[Event]:
        """What this subscriber may see of `items`, as it may see it."""
        if self.organisation is None:
            return items
        shown = []
        for item in items:
            if self.allows(item):
                directory = item.stream == self.directory
                shown.append(revocation(item) if directory and item.kind == "key.revoked" else item)
        return shown

    def allows(self, item: Event) -> bool:
        if self.organisation is None:
            return True
        if item.stream == self.directory:
            return item.kind in _PUBLIC_DIRECTORY_KINDS
        windows, consents = self._case(item.stream)
        if item.hash in consents:
            return True  # the sharing consent itself: sharing begins
        if item.kind == "consent.withdrawn" and item.body.get("consent") in consents:
            return True  # sharing ends
        family = item.kind.split(".", 1)[0]
        decision = item.body.get("decision")
        return any(
            window.given_at <= item.recorded_at
            and (window.withdrawn_at is None or item.recorded_at < window.withdrawn_at)
            and item.recorded_at[:10] <= window.until
            and family in window.families
            and (window.decision is None or window.decision == decision)
            for window in windows
        )

    def forget(self) -> None:
        """Drop cached windows (a consent may have changed since)."""
        self._windows.clear()

    def _case(self, case: str) -> tuple[list[_Window], set[str]]:
        if case not in self._windows:
            register = self.projections.register(case)
            self._windows[case] = _sharing(register, self.organisation or "")
        return self._windows[case]


def _sharing(register: Register | None, organisation: str) -> tuple[list[_Window], set[str]]:
    windows: list[_Window] = []
    hashes: set[str] = set()
    for consent in register.consents if register else []:
        scope = consent.scope
        if consent.given and isinstance(scope, SharingScope) and scope.organisation == organisation:
            hashes.add(consent.hash)
            windows.append(
                _Window(
                    consent.recorded_at,
                    consent.withdrawn_at,
                    scope.until.isoformat(),
                    frozenset(scope.data_kinds),
                    consent.decision,
                )
            )
    return windows, hashes


class Feed:
    """Newly sealed events, read once for all live subscribers and kept in a bounded ring.

    A subscriber behind the ring reads from the store like a catch-up; so the server's memory
    does not grow with the number of subscribers or with how far behind they are. While nobody
    listens, nothing is read: the feed only keeps up with where the log ends.
    """

    def __init__(self, origin: str, size: int = 4096) -> None:
        self.origin = origin
        self._ring: deque[Event] = deque(maxlen=size)
        self._sealed = asyncio.Event()
        self._published = asyncio.Event()
        self._size = 0  # the log's size, as last reported by the sealer
        self.listeners = 0  # live subscribers connected
        self.closed = False
        self.head = -1  # the last position read into the ring (or skipped, while nobody listens)

    def sealed(self, size: int) -> None:
        """The sealer committed a batch and the log now has `size` entries (on the loop)."""
        self._size = max(self._size, size)
        self._sealed.set()

    async def run(
        self,
        read: Callable[[int], Awaitable[list[SealedEntry]]],
        size: Callable[[], Awaitable[int]],
        head: int,
    ) -> None:
        """Read each newly sealed batch once, from after `head`; polls too (reading `size`
        while nobody listens), for a sealer in another process that does not report here."""
        self.head = head
        while True:
            reported = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    reported = await self._sealed.wait()
            self._sealed.clear()
            if not self.listeners:
                end = self._size if reported else await size()
                if end - 1 > self.head:
                    self.head = end - 1
                    self._ring.clear()  # the ring holds no gaps: what it held is behind now
                continue
            while batch := await read(self.head):
                for sealed in batch:
                    self._ring.append(event(self.origin, sealed))
                self.head = batch[-1].position
                published, self._published = self._published, asyncio.Event()
                published.set()

    def close(self) -> None:
        """The server is stopping: wake every subscriber so that it ends."""
        self.closed = True
        self._published.set()

    async def wait(self, timeout: float) -> None:
        """Until new events are in the ring, the feed closes, or `timeout` passes."""
        published = self._published
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await published.wait()

    def recent(self, after: int) -> list[Event] | None:
        """Events after `after` from the ring, or None if `after` is older than the ring."""
        ring = self._ring
        if not ring:
            return [] if after >= self.head else None
        first = ring[0].position
        if after < first - 1:
            return None
        return [ring[i] for i in range(after - first + 1, len(ring))]
