"""Records kept beside the streams (tokens, revocations, recorded reads, statement-id claims)
are never read as streams: a statement naming one is refused and nothing changes, whatever id
the store holds the record under."""

from __future__ import annotations

import uuid

import pytest

from ledger.access import ReadRecorded, TokenIssued, TokenRevoked, issue, record_read, token
from ledger.errors import LedgerError
from ledger.ledger import Accepted, Ledger
from ledger.stream import claim_id
from tests.conftest import World, fingerprint


def planted_token(ledger: Ledger, person: str) -> uuid.UUID:
    """A token record under a random (v4) id, as tokens were issued before they had a namespace
    of their own: planted through the ledger's record API."""
    token_id = uuid.uuid4()
    ledger.record(
        TokenIssued(
            originator_id=token_id,
            person=person,
            scope="member",
            digest="0" * 64,
            issued_at=ledger.clock.next(),
        )
    )
    return token_id


def refused(world: World, data: bytes) -> LedgerError:
    before = fingerprint(world.ledger)
    with pytest.raises(LedgerError) as caught:
        world.ledger.submit(data)
    assert fingerprint(world.ledger) == before
    [answer] = world.ledger.submit_many([data])
    assert isinstance(answer, LedgerError)
    assert fingerprint(world.ledger) == before
    return caught.value


def test_new_records_have_ids_no_statement_can_name(world: World) -> None:
    alice = world.person("Alice")
    issued = issue(world.ledger, alice.person, "member", "0" * 64, None)
    read = record_read(world.ledger, alice.person, issued.originator_id.hex, str(uuid.uuid4()), "x")
    for record_id in (issued.originator_id, read.originator_id):
        assert record_id.version == 5
        error = refused(world, alice.submission(str(record_id), "note.made", {"text": "x"}))
        assert error.code == "malformed"


def test_a_statement_naming_an_older_token_is_refused_and_changes_nothing(world: World) -> None:
    alice = world.person("Alice")
    bob = world.person("Bob")
    token_id = planted_token(world.ledger, bob.person)
    error = refused(world, alice.submission(str(token_id), "note.made", {"text": "x"}))
    assert error.code == "unknown_stream"
    # The token still works: its record is read as a token, not as a stream.
    issued, revoked = token(world.ledger, token_id)
    assert issued is not None and issued.person == bob.person and revoked is None
    assert world.ledger.check_stream(world.ledger.directory_id) > 0


def test_a_statement_naming_an_older_read_record_is_refused(world: World) -> None:
    alice = world.person("Alice")
    read_id = uuid.uuid4()
    world.ledger.record(
        ReadRecorded(
            originator_id=read_id,
            person=alice.person,
            token="t",
            stream=str(uuid.uuid4()),
            what="plan",
            at=world.ledger.clock.next(),
        )
    )
    error = refused(world, alice.submission(str(read_id), "note.made", {"text": "x"}))
    assert error.code == "unknown_stream"


def test_a_revoked_older_token_is_refused_as_a_stream(world: World) -> None:
    alice = world.person("Alice")
    token_id = planted_token(world.ledger, alice.person)
    world.ledger.record(
        TokenRevoked(originator_id=token_id, originator_version=2, revoked_at="2030-01-01")
    )
    error = refused(world, alice.submission(str(token_id), "note.made", {"text": "x"}))
    assert error.code == "unknown_stream"


def test_a_statement_naming_a_claim_is_refused(world: World) -> None:
    alice = world.person("Alice")
    stream = str(uuid.uuid4())
    statement_id = str(uuid.uuid4())
    first = alice.submission(stream, "note.made", {"text": "x"}, statement_id=statement_id)
    assert isinstance(world.ledger.submit(first), Accepted)
    claim = claim_id(statement_id)
    error = refused(world, alice.submission(str(claim), "note.made", {"text": "y"}))
    assert error.code == "malformed"


def test_reading_a_record_as_a_stream_is_refused(world: World) -> None:
    alice = world.person("Alice")
    token_id = planted_token(world.ledger, alice.person)
    for read in (
        lambda: world.ledger.stream(token_id),
        lambda: world.ledger.replay(token_id),
        lambda: list(world.ledger.entries(token_id)),
        lambda: world.ledger.entry(token_id, 1),
        lambda: world.ledger.check_stream(token_id),
    ):
        with pytest.raises(LedgerError) as caught:
            read()
        assert caught.value.code == "unknown_stream"


def test_a_token_look_up_of_a_stream_finds_no_token(world: World) -> None:
    alice = world.person("Alice")
    stream = uuid.uuid4()
    world.ledger.submit(alice.submission(str(stream), "note.made", {"text": "x"}))
    world.ledger.submit(alice.submission(str(stream), "note.made", {"text": "y"}))
    assert token(world.ledger, stream) == (None, None)


def test_a_group_with_a_statement_naming_a_token_answers_the_others(world: World) -> None:
    alice = world.person("Alice")
    token_id = planted_token(world.ledger, alice.person)
    streams = [str(uuid.uuid4()) for _ in range(3)]
    good = [alice.submission(s, "note.made", {"text": str(n)}) for n in range(2) for s in streams]
    bad = alice.submission(str(token_id), "note.made", {"text": "x"})
    batch = [*good[:3], bad, *good[3:]]
    answers = world.ledger.submit_many(batch)
    assert isinstance(answers[3], LedgerError) and answers[3].code == "unknown_stream"
    assert all(isinstance(a, Accepted) and a.created for n, a in enumerate(answers) if n != 3)
    # Later appends follow the real heads, and every stream checks out.
    for s in streams:
        world.ledger.submit(alice.submission(s, "note.made", {"text": "after"}))
        assert world.ledger.check_stream(uuid.UUID(s)) == 3
    cold = world.reopen()
    try:
        for s in streams:
            assert cold.check_stream(uuid.UUID(s)) == 3
    finally:
        cold.close()
