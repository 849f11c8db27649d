"""Read access: the credentials that let a person read, and the record of every read that must
be accounted for.

Neither is a statement: nobody signs them and they are in no stream's chain. They are kept in
the same store as the entries (under their own pinned topics), so they are as durable as the
ledger, survive every projection rebuild, and are on the same backups.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from eventsourcing.application import LRUCache
from eventsourcing.persistence import IntegrityError

from ledger.ledger import Ledger
from ledger.stream import Record, record_id
from ledger.tables import Tables

TOKEN_TOPIC = "accord.ledger:token.v1"
REVOCATION_TOPIC = "accord.ledger:token-revoked.v1"
READ_TOPIC = "accord.ledger:read.v1"


class TokenIssued(Record, frozen=True, kw_only=True):
    """A bearer token was issued: only the SHA-256 of its secret is kept."""

    topic = TOKEN_TOPIC

    person: str
    scope: str
    digest: str
    issued_at: str
    organisation: str | None = None


class TokenRevoked(Record, frozen=True, kw_only=True):
    """A token stops working from `revoked_at` on (version 2 of the token's record)."""

    topic = REVOCATION_TOPIC

    revoked_at: str


class ReadRecorded(Record, frozen=True, kw_only=True):
    """Someone read a stream (or part of it) with a token; `what` names the view."""

    topic = READ_TOPIC

    person: str
    token: str
    stream: str
    what: str
    at: str


def issue(
    ledger: Ledger, person: str, scope: str, digest: str, organisation: str | None
) -> TokenIssued:
    """Record a new token's digest; the caller keeps the secret and hands it out once."""
    issued = TokenIssued(
        originator_id=record_id(),
        person=person,
        scope=scope,
        digest=digest,
        issued_at=ledger.clock.next(),
        organisation=organisation,
    )
    ledger.record(issued)
    return issued


def revoke(ledger: Ledger, token: UUID) -> bool:
    """Revoke a token; False if there is no such token or it was already revoked."""
    history = list(ledger.events.get(token))
    if len(history) != 1 or not isinstance(history[0], TokenIssued):
        return False
    try:
        ledger.record(
            TokenRevoked(originator_id=token, originator_version=2, revoked_at=ledger.clock.next())
        )
    except IntegrityError:  # revoked meanwhile by someone else
        return False
    return True


def token(ledger: Ledger, token_id: UUID) -> tuple[TokenIssued | None, TokenRevoked | None]:
    """A token's record and its revocation, if any."""
    issued = revoked = None
    for event in ledger.events.get(token_id, lte=2):
        if isinstance(event, TokenIssued):
            issued = event
        elif isinstance(event, TokenRevoked):
            revoked = event
    return issued, revoked


class TokenBook:
    """Token look-ups for a busy server. An issued record never changes, so it is cached; whether
    a token was revoked is one primary-key read every time, so a revocation made by any process
    counts at once."""

    def __init__(self, ledger: Ledger, cached: int = 10_000) -> None:
        self.ledger = ledger
        self.tables = Tables(ledger.store, ())
        self._issued: LRUCache[UUID, TokenIssued] = LRUCache(maxsize=cached)
        table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
        self._revoked_sql = (
            f"SELECT 1 FROM {table} WHERE originator_id = ? AND originator_version = 2"
            " AND topic = ?"
        )

    def valid(self, token_id: UUID) -> TokenIssued | None:
        """The token's record if it was issued and is not revoked."""
        try:
            issued = self._issued.get(token_id)
        except KeyError:
            found, revoked = token(self.ledger, token_id)
            if found is None or revoked is not None:
                return None
            self._issued.put(token_id, found)
            return found
        key: UUID | str = token_id if self.tables.postgres else token_id.hex
        if self.tables.query(self._revoked_sql, (key, REVOCATION_TOPIC)):
            self._issued.get(token_id, evict=True)
            return None
        return issued

    def close(self) -> None:
        self.tables.close()


def tokens(ledger: Ledger) -> Iterator[tuple[TokenIssued, TokenRevoked | None]]:
    """Every token ever issued, oldest first, with its revocation if any."""
    revoked: dict[UUID, TokenRevoked] = {}
    issued: list[TokenIssued] = []
    for record in ledger.read_records([TOKEN_TOPIC, REVOCATION_TOPIC]):
        if isinstance(record, TokenRevoked):
            revoked[record.originator_id] = record
        elif isinstance(record, TokenIssued):
            issued.append(record)
    for token_record in issued:
        yield token_record, revoked.get(token_record.originator_id)


def record_read(ledger: Ledger, person: str, token: str, stream: str, what: str) -> ReadRecorded:
    """Record a read before its data is served; followers see it like an entry."""
    read = ReadRecorded(
        originator_id=record_id(),
        person=person,
        token=token,
        stream=stream,
        what=what,
        at=ledger.clock.next(),
    )
    ledger.record(read)
    return read
