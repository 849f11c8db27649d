"""Streams as eventsourcing aggregates: entry events stored verbatim, and the stream's head."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID, uuid4, uuid5

import msgspec
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from ledger.canonical import canonical, loads
from ledger.entry import GENESIS_PREV, Entry, read_entry
from ledger.errors import IntegrityViolation, LedgerError, Malformed, UnknownStream

# Pinned topics: stored rows name these strings, never a Python class path.
ENTRY_TOPIC = "accord.ledger:entry.v1"
CLAIM_TOPIC = "accord.ledger:claim.v1"

_CLAIM_NAMESPACE = UUID("6f1d3c1e-7a0b-5b7e-9c55-0a3c2f5f4a11")
_RECORD_NAMESPACE = UUID("56b74a35-828d-4880-90b0-ac0dfee2be7b")


def claim_id(statement_id: str) -> UUID:
    """The id of the one-event aggregate that reserves a statement id (idempotency)."""
    return uuid5(_CLAIM_NAMESPACE, statement_id)


def record_id() -> UUID:
    """A fresh id for a record kept beside the streams.

    A v5 UUID in a namespace of its own: statements may name only v4 and v7 ids (and the
    directory's), so no statement can name a record, and no record shares an id with a stream.
    """
    return uuid5(_RECORD_NAMESPACE, uuid4().hex)


@dataclass(frozen=True)
class EntryRecorded:
    """The domain event of a stream: one entry, at version == seq."""

    originator_id: UUID
    originator_version: int
    entry: Entry


@dataclass(frozen=True)
class StatementClaimed:
    """Reserves a statement id for the entry that recorded it, in the same transaction."""

    originator_id: UUID
    originator_version: int
    stream: str
    seq: int
    hash: str


def stream_entry(event: object, stream_id: UUID) -> Entry:
    """The entry an event of a stream holds; `UnknownStream` if the id holds something else
    (a record kept beside the streams, stored under a random id before records had their own)."""
    if not isinstance(event, EntryRecorded):
        raise UnknownStream(f"{stream_id} is not a stream: no statement may name it")
    return event.entry


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A fact the ledger keeps beside its streams, never in a chain (e.g. who read what).

    Its id comes from `record_id`, so that no statement can name it. Stored as canonical JSON
    under the subclass's pinned `topic`; subclasses register by declaring one.
    """

    topics: ClassVar[dict[str, type[Record]]] = {}
    topic: ClassVar[str] = ""

    originator_id: UUID
    originator_version: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.topic:
            Record.topics[cls.topic] = cls


class EntryMapper(Mapper[UUID]):
    """Stores an entry's canonical bytes as the event state, verbatim, under a pinned topic."""

    def __init__(self) -> None:
        super().__init__(transcoder=JSONTranscoder())

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if isinstance(domain_event, EntryRecorded):
            topic, state = ENTRY_TOPIC, domain_event.entry.data
        elif isinstance(domain_event, StatementClaimed):
            topic = CLAIM_TOPIC
            state = canonical(
                {"stream": domain_event.stream, "seq": domain_event.seq, "hash": domain_event.hash}
            )
        elif isinstance(domain_event, Record):
            topic = domain_event.topic
            fields = msgspec.to_builtins(domain_event)
            del fields["originator_id"], fields["originator_version"]
            state = canonical(fields)
        else:
            raise TypeError(f"the ledger stores no {type(domain_event).__name__} events")
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=topic,
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        originator_id = _as_uuid(stored_event.originator_id)
        version = stored_event.originator_version
        if stored_event.topic == ENTRY_TOPIC:
            try:
                entry = read_entry(bytes(stored_event.state))
            except Malformed as exc:
                raise IntegrityViolation(str(originator_id), version, exc.detail) from None
            return EntryRecorded(originator_id, version, entry)
        if stored_event.topic == CLAIM_TOPIC:
            claim = loads(bytes(stored_event.state))
            return StatementClaimed(
                originator_id, version, claim["stream"], claim["seq"], claim["hash"]
            )
        record = Record.topics.get(stored_event.topic)
        if record is not None:
            fields = loads(bytes(stored_event.state))
            fields.update(originator_id=str(originator_id), originator_version=version)
            try:
                return msgspec.convert(fields, type=record)
            except msgspec.ValidationError as exc:
                raise IntegrityViolation(str(originator_id), version, str(exc)) from None
        raise IntegrityViolation(
            str(originator_id), version, f"unknown event topic {stored_event.topic!r}"
        )


class Stream:
    """The state of one stream: its version and chain head; subclasses fold in more state."""

    def __init__(self, stream_id: UUID) -> None:
        self.id = stream_id
        self.key = str(stream_id)  # as statements name it; str(UUID) is slow enough to matter
        self.version = 0
        self.head = GENESIS_PREV
        self.recorded_at = ""

    def validate(self, entry: Entry) -> None:
        """Check the entry's statement in full, as on submission; override to check more.

        `fold` validates each entry before applying it. `apply` reads no more than it needs,
        so a follower that trusts what it reads (see `ledger.entry`) can apply alone.
        """
        _ = entry.statement

    def apply(self, entry: Entry) -> None:
        """Fold one entry into the state; override to keep more, calling this first."""
        where = self.key
        if entry.seq != self.version + 1:
            raise IntegrityViolation(where, self.version + 1, f"entry says seq {entry.seq}")
        if entry.prev != self.head:
            raise IntegrityViolation(
                where,
                entry.seq,
                f"prev does not match the hash of seq {self.version}: the chain is broken",
            )
        if entry.recorded_at < self.recorded_at:
            raise IntegrityViolation(where, entry.seq, "recorded_at goes backwards")
        if entry.header.stream != where:
            raise IntegrityViolation(where, entry.seq, "the statement names another stream")
        self.version = entry.seq
        self.head = entry.hash
        self.recorded_at = entry.recorded_at


def fold(state: Stream, entries: Iterable[Entry]) -> None:
    """Validate and apply entries to a state; any entry that does not fit is reported by stream
    and seq."""
    for entry in entries:
        try:
            state.validate(entry)
            state.apply(entry)
        except IntegrityViolation:
            raise
        except LedgerError as exc:
            raise IntegrityViolation(str(state.id), entry.seq, exc.detail) from None


def _as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
