"""Fixtures for the decision domain: a decision record on each store, and the worked case."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from domain.record import DecisionRecord
from domain.worked_case import CAST, SCHOOL, Played, birth_date, play
from ledger.author import Author
from tests.conftest import World, open_world


@pytest.fixture
def record(store_url: str) -> Iterator[World]:
    opened = open_world(store_url, DecisionRecord)
    try:
        yield opened
    finally:
        opened.ledger.close()


def cast(world: World, start: datetime) -> dict[str, Author]:
    """Register the worked case's people, each with a key of their own, and its school."""
    authors = {}
    for person in CAST:
        authors[person.handle] = world.person(
            person.name,
            person.kind,
            profession=person.profession,
            organisation=person.organisation,
            born=birth_date(start) if person.kind == "child" else None,
        )
    world.organisation(SCHOOL)
    return authors


@dataclass
class WorkedCase:
    played: Played
    authors: dict[str, Author]
    start: datetime


def play_worked_case(world: World) -> WorkedCase:
    """Register the cast and play the worked case on the world's ledger."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    authors = cast(world, start)
    case = str(uuid.uuid4())
    played = play(
        case,
        authors,
        lambda data: world.ledger.submit(data).receipt,
        start,
        world.organisation(SCHOOL),
    )
    return WorkedCase(played, authors, start)
