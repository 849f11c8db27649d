"""Following the event stream: catch up in batches, then follow live, reconnecting with
back-off, and verify every event before handing it over.

Each event's entry must hash to its `entryhash`, be signed by a key the subscriber has seen
bound to its author (and not revoked at the time), or by the authority key for the directory;
an unscoped subscriber also checks every stream's hash chain and that positions are
consecutive (a scoped one sees only some events, so it checks that positions increase). A
scoped subscriber learns of key revocations from `accord.key.revocation` notices, which carry
no signed entry: each is applied to the keys it knows (so nothing signed with the key from the
revocation, or from when it was compromised, is accepted after it) and is not handed over. The
position can be kept in a file, written atomically after each event, to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import aiohttp
import orjson

from api.errors import error_from
from api.schemas import REVOCATION
from ledger.canonical import canonical
from ledger.clock import AT_PATTERN, normalise
from ledger.directory_records import KeyRecord
from ledger.encoding import sha256_hex
from ledger.entry import GENESIS_PREV, Entry, read_entry
from ledger.errors import LedgerError
from ledger.files import write_private
from ledger.keys import Ed25519PublicKey, bound_public_key, kid

_AT = re.compile(AT_PATTERN)


class Untrusted(Exception):
    """An event that does not verify: the subscription stops here."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(f"position {position}: {problem}")
        self.position = position
        self.problem = problem


@dataclass(frozen=True)
class Received:
    """A verified event: its position, the CloudEvent as a dict, and the parsed entry."""

    position: int
    cloudevent: dict[str, Any]
    entry: Entry


class Verifier:
    """Checks events in order as a subscriber receives them."""

    def __init__(self, authority: Ed25519PublicKey, directory: str, after: int) -> None:
        self.authority_kid = kid(authority)
        self.directory = directory
        self.keys: dict[str, KeyRecord] = {}
        self.keys[self.authority_kid] = KeyRecord(self.authority_kid, "", authority, "")
        self.heads: dict[str, tuple[int, str]] = {}
        self.position = after
        self.from_start = after < 0

    def take(self, cloudevent: dict[str, Any], scoped: bool) -> Received | None:
        """`check` an event; a revocation notice is applied to the keys instead (None)."""
        if cloudevent.get("type") == REVOCATION:
            self.revocation(cloudevent, scoped)
            return None
        return self.check(cloudevent, scoped)

    def revocation(self, cloudevent: dict[str, Any], scoped: bool) -> None:
        """Apply a scoped stream's revocation notice to the key it names. It has no signature
        to check: it can only make the subscriber refuse more, never accept more."""
        position = self._position(cloudevent, scoped)
        if not scoped:
            raise Untrusted(position, "a revocation notice on an unscoped stream")
        if cloudevent.get("subject") != self.directory:
            raise Untrusted(position, "a revocation notice about another stream than the directory")
        problem = self._revoke(cloudevent)
        if problem is not None:
            raise Untrusted(position, f"the revocation notice {problem}")
        self.position = position

    def _revoke(self, cloudevent: dict[str, Any]) -> str | None:
        """Revoke the key a notice names; what is wrong with the notice, if anything."""
        data = cloudevent.get("data")
        if not isinstance(data, dict) or data.get("entryhash") != cloudevent.get("entryhash"):
            return "does not name its entry"
        revoked_at, since = data.get("revoked_at"), data.get("compromised_since")
        if not _timestamp(revoked_at) or not (since is None or _timestamp(since)):
            return "does not say when"
        key_id = data.get("kid")
        record = self.keys.get(key_id) if isinstance(key_id, str) else None
        if record is None or record.kid == self.authority_kid:
            return f"revokes {key_id!r}, not a key bound to anyone it has seen"
        record.revoked_at = min(record.revoked_at or revoked_at, revoked_at)
        if since is not None:
            record.compromised_since = normalise(since)
        return None

    def prime(self, cloudevent: dict[str, Any]) -> None:
        """Learn from an event at or before the resume position, verified when it was first
        received: keys from the directory (whose signatures are checked again, cheaply), the
        revocations of a scoped stream's notices, and each stream's chain head."""
        if cloudevent.get("type") == REVOCATION:
            self._revoke(cloudevent)
            return
        try:
            data = canonical(cloudevent["data"])
            entry = read_entry(data)
            statement = entry.statement
        except (LedgerError, KeyError, TypeError):
            return
        if statement.stream == self.directory:
            authority = self.keys[self.authority_kid]
            if statement.kid == self.authority_kid and entry.signature_valid(authority.public):
                with contextlib.suppress(LedgerError, KeyError, TypeError):
                    self._directory(entry)
        self.heads[statement.stream] = (entry.seq, sha256_hex(data))

    def check(self, cloudevent: dict[str, Any], scoped: bool) -> Received:
        """Verify an entry's event (see the module's docstring), or raise `Untrusted`."""
        position = self._position(cloudevent, scoped)
        try:
            data = canonical(cloudevent["data"])
            entry = read_entry(data)
            statement = entry.statement
        except (LedgerError, KeyError, TypeError) as exc:
            raise Untrusted(position, f"the entry does not parse: {exc}") from None
        if sha256_hex(data) != cloudevent.get("entryhash"):
            raise Untrusted(position, "the entry does not match its hash")
        if cloudevent.get("subject") != statement.stream:
            raise Untrusted(position, "the event's subject is not the entry's stream")
        self._signature(position, entry)
        self._chain(position, entry, scoped)
        if statement.stream == self.directory:
            try:
                self._directory(entry)
            except (LedgerError, KeyError, TypeError) as exc:
                raise Untrusted(
                    position, f"the directory entry's body does not parse: {exc}"
                ) from None
        self.position = position
        return Received(position, cloudevent, entry)

    def _position(self, cloudevent: dict[str, Any], scoped: bool) -> int:
        sequence = cloudevent.get("sequence")
        if not (isinstance(sequence, str) and sequence.isascii() and sequence.isdigit()):
            raise Untrusted(self.position + 1, f"sequence {sequence!r} is not a position")
        position = int(sequence)
        if position <= self.position or (not scoped and position != self.position + 1):
            raise Untrusted(position, f"expected position {self.position + 1}")
        return position

    def _signature(self, position: int, entry: Entry) -> None:
        statement = entry.statement
        if statement.stream == self.directory:
            if statement.kid != self.authority_kid:
                raise Untrusted(position, "a directory entry not signed by the authority")
            record = self.keys[self.authority_kid]
        else:
            known = self.keys.get(statement.kid)
            if known is None or known.person != statement.by:
                raise Untrusted(position, f"key {statement.kid} is not bound to its author")
            problem = known.problem_at(entry.recorded_at)
            if problem is not None:
                raise Untrusted(position, problem)
            record = known
        if not entry.signature_valid(record.public):
            raise Untrusted(position, "the signature does not verify")

    def _chain(self, position: int, entry: Entry, scoped: bool) -> None:
        stream = entry.statement.stream
        head = self.heads.get(stream)
        if head is None:
            if self.from_start and not scoped and (entry.seq != 1 or entry.prev != GENESIS_PREV):
                raise Untrusted(position, f"stream {stream} does not start at seq 1")
        elif (not scoped or entry.seq == head[0] + 1) and (
            entry.seq != head[0] + 1 or entry.prev != head[1]
        ):
            raise Untrusted(position, f"stream {stream}'s hash chain is broken")
        self.heads[stream] = (entry.seq, entry.hash)

    def _directory(self, entry: Entry) -> None:
        body = entry.statement.body
        if entry.statement.kind == "key.bound":
            public, unusable = bound_public_key(body["public_key"])
            self.keys[body["kid"]] = KeyRecord(
                body["kid"], body["person"], public, entry.recorded_at, unusable=unusable
            )
        elif entry.statement.kind == "key.revoked" and body["kid"] in self.keys:
            record = self.keys[body["kid"]]
            record.revoked_at = entry.recorded_at
            since = body.get("compromised_since")
            if since:
                record.compromised_since = normalise(since)


def _timestamp(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _AT.match(value) is not None


async def follow(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    verifier: Verifier,
    position_file: Path | None = None,
    batch: int = 1000,
    max_backoff: float = 5.0,
) -> AsyncIterator[Received]:
    """Verified events after the verifier's position, for ever: catch-up, then live."""
    backoff = 0.1
    primed = verifier.position < 0
    while True:
        try:
            if not primed:
                await _prime(session, url, headers, verifier, batch)
                primed = verifier.from_start = True  # every stream so far is known now
            async for received in _catch_up(session, url, headers, verifier, batch):
                _save(position_file, received.position)
                yield received
            async for received in _live(session, url, headers, verifier):
                _save(position_file, received.position)
                backoff = 0.1
                yield received
        except (TimeoutError, aiohttp.ClientError, ConnectionError, _ServerTrouble):
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)


class _ServerTrouble(Exception):
    """A 5xx answer: try again later."""


async def _catch_up(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    verifier: Verifier,
    batch: int,
) -> AsyncIterator[Received]:
    while True:
        params = {"after": str(verifier.position), "limit": str(batch)}
        async with session.get(f"{url}/v1/events", params=params, headers=headers) as response:
            await _raise_for(response)
            scoped = response.headers.get("Accord-Scoped") == "true"
            events = orjson.loads(await response.read())
            next_after = int(response.headers.get("Accord-Next-After", verifier.position))
        for cloudevent in events:
            if (received := verifier.take(cloudevent, scoped)) is not None:
                yield received
        if scoped and next_after > verifier.position:
            verifier.position = next_after  # hidden events: nothing to check, move on
        if not events and next_after <= verifier.position:
            return


async def _prime(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    verifier: Verifier,
    batch: int,
) -> None:
    """Resuming after a position: read the log up to it to learn keys and chain heads."""
    after = -1
    while after < verifier.position:
        limit = min(batch, verifier.position - after)
        params = {"after": str(after), "limit": str(limit)}
        async with session.get(f"{url}/v1/events", params=params, headers=headers) as response:
            await _raise_for(response)
            events = orjson.loads(await response.read())
            next_after = int(response.headers.get("Accord-Next-After", after))
        for cloudevent in events:
            verifier.prime(cloudevent)
        if next_after <= after:
            return
        after = next_after


async def _live(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    verifier: Verifier,
) -> AsyncIterator[Received]:
    live_headers = {**headers, "Last-Event-ID": str(verifier.position)}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with session.get(
        f"{url}/v1/events/live", headers=live_headers, timeout=timeout
    ) as response:
        await _raise_for(response)
        scoped = response.headers.get("Accord-Scoped") == "true"
        data: list[bytes] = []
        async for raw in response.content:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif not line and data:
                cloudevent = orjson.loads(b"\n".join(data))
                data = []
                if (received := verifier.take(cloudevent, scoped)) is not None:
                    yield received
    raise ConnectionError("the live stream ended")


async def _raise_for(response: aiohttp.ClientResponse) -> None:
    if response.status >= 500:
        raise _ServerTrouble(response.status)
    if response.status >= 400:
        raise error_from(response.status, await response.read())


def _save(path: Path | None, position: int) -> None:
    if path is None:
        return
    write_private(path, f"{position}\n".encode(), replace=True, sync=False)


def saved_position(path: Path | None, default: int) -> int:
    """The position kept in `path`, or `default` if there is none yet."""
    if path is None:
        return default
    with contextlib.suppress(FileNotFoundError, ValueError):
        return int(path.read_text().strip())
    return default
