"""A group commit that fails in the store answers each statement by what really happened to
it, and leaves no cached state ahead of the store."""

from __future__ import annotations

import uuid

import pytest

from ledger.errors import LedgerError
from ledger.ledger import Accepted
from tests.conftest import World, fingerprint
from tests.poison import FATAL, MARKER, fatal, poison


def test_a_store_failure_in_a_group_answers_each_statement_truthfully(world: World) -> None:
    alice = world.person("Alice")
    streams = [str(uuid.uuid4()) for _ in range(3)]
    for s in streams:
        world.ledger.submit(alice.submission(s, "note.made", {"text": "first"}))
    poison(world.ledger)
    good = [alice.submission(s, "note.made", {"text": str(n)}) for n in range(2) for s in streams]
    bad = alice.submission(streams[1], "note.made", {"text": MARKER})
    answers = world.ledger.submit_many([*good[:2], bad, *good[2:]])
    refused = answers.pop(2)
    assert isinstance(refused, LedgerError) and refused.code == "unavailable"
    assert all(isinstance(answer, Accepted) for answer in answers)
    receipts = [answer.receipt for answer in answers if isinstance(answer, Accepted)]
    assert sorted((r.stream, r.seq) for r in receipts) == sorted(
        (s, seq) for s in streams for seq in (2, 3)
    )
    # Nothing cached runs ahead of the store: the next appends follow the real heads.
    before = fingerprint(world.ledger)
    with pytest.raises(LedgerError) as caught:
        world.ledger.submit(bad)
    assert caught.value.code == "unavailable"
    assert fingerprint(world.ledger) == before
    for s in streams:
        accepted = world.ledger.submit(alice.submission(s, "note.made", {"text": "after"}))
        assert accepted.receipt.seq == 4
    cold = world.reopen()
    try:
        for s in streams:
            assert cold.check_stream(uuid.UUID(s)) == 4
    finally:
        cold.close()


def test_a_connection_ended_mid_group_answers_each_statement_truthfully(
    postgres_world: World,
) -> None:
    world = postgres_world  # a server process ending a connection is PostgreSQL's
    alice = world.person("Alice")
    streams = [str(uuid.uuid4()) for _ in range(3)]
    fatal(world.ledger)
    good = [alice.submission(s, "note.made", {"text": str(n)}) for n in range(2) for s in streams]
    bad = alice.submission(streams[0], "note.made", {"text": FATAL})
    answers = world.ledger.submit_many([*good[:3], bad, *good[3:]])
    refused = answers.pop(3)
    assert isinstance(refused, LedgerError) and refused.code == "unavailable"
    assert all(isinstance(answer, Accepted) for answer in answers), answers
    for s in streams:
        accepted = world.ledger.submit(alice.submission(s, "note.made", {"text": "after"}))
        assert accepted.receipt.seq == 3
        assert world.ledger.check_stream(uuid.UUID(s)) == 3
