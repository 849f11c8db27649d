"""Stored bytes changed behind the ledger's back are found, by stream and seq, on each store."""

from __future__ import annotations

import uuid

import pytest

from ledger.errors import IntegrityViolation
from tests.conftest import World, tamper


def five_entries(world: World) -> uuid.UUID:
    grace = world.person("Grace")
    stream = str(uuid.uuid4())
    for n in range(1, 6):
        world.ledger.submit(grace.submission(stream, "note.made", {"text": f"session {n}"}))
    return uuid.UUID(stream)


def flip(data: bytes, needle: bytes, replacement: bytes) -> bytes:
    assert needle in data
    changed = data.replace(needle, replacement, 1)
    assert len(changed) == len(data)
    return changed


def test_one_changed_byte_in_a_statement_is_named_by_reading_and_by_checking(
    world: World, store_url: str
) -> None:
    stream = five_entries(world)
    original = world.ledger.entry(stream, 3).data
    tamper(store_url, stream, 3, flip(original, b"session 3", b"session 8"))

    with pytest.raises(IntegrityViolation) as checked:
        world.reopen().check_stream(stream)
    with pytest.raises(IntegrityViolation) as read:
        world.reopen().stream(stream)

    for raised in (checked, read):
        assert (raised.value.stream, raised.value.seq) == (str(stream), 3)
        assert "signature" in raised.value.detail


def test_a_byte_that_breaks_the_json_is_named_exactly(world: World, store_url: str) -> None:
    stream = five_entries(world)
    original = world.ledger.entry(stream, 2).data
    tamper(store_url, stream, 2, flip(original, b'{"prev"', b'["prev"'))

    with pytest.raises(IntegrityViolation) as raised:
        world.reopen().stream(stream)
    assert (raised.value.stream, raised.value.seq) == (str(stream), 2)


def test_a_deleted_entry_is_named_by_the_gap_it_leaves(world: World, store_url: str) -> None:
    stream = five_entries(world)
    tamper(store_url, stream, 3, None)

    with pytest.raises(IntegrityViolation) as raised:
        world.reopen().check_stream(stream)
    assert (raised.value.stream, raised.value.seq) == (str(stream), 3)


@pytest.mark.parametrize(("years", "named_seq"), [(-1, 3), (+1, 4)], ids=["earlier", "later"])
def test_a_changed_recorded_time_is_named_where_the_stream_stops_adding_up(
    world: World, store_url: str, years: int, named_seq: int
) -> None:
    stream = five_entries(world)
    entry = world.ledger.entry(stream, 3)
    # The signature does not cover recorded_at. Earlier than seq 2 shows at seq 3 itself;
    # later shows at seq 4, whose prev no longer matches and whose time now goes backwards.
    year = entry.recorded_at[:4]
    field = b'"recorded_at":"'  # (the year's digits may also occur in the prev hash before it)
    changed = flip(entry.data, field + year.encode(), field + str(int(year) + years).encode())
    tamper(store_url, stream, 3, changed)

    with pytest.raises(IntegrityViolation) as raised:
        world.reopen().check_stream(stream)
    assert (raised.value.stream, raised.value.seq) == (str(stream), named_seq)


def test_the_last_entry_changed_is_caught_by_its_signature(world: World, store_url: str) -> None:
    stream = five_entries(world)
    original = world.ledger.entry(stream, 5).data
    tamper(store_url, stream, 5, flip(original, b"session 5", b"session 6"))

    with pytest.raises(IntegrityViolation) as raised:
        world.reopen().check_stream(stream)
    assert (raised.value.stream, raised.value.seq) == (str(stream), 5)


def test_an_untouched_stream_checks_out(world: World) -> None:
    stream = five_entries(world)
    assert world.reopen().check_stream(stream) == 5
