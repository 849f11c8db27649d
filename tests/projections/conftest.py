"""Fixtures for projections: a decision record with its projection database and follower."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from domain.record import DecisionRecord
from projections.database import Database
from projections.follower import Follower
from projections.queries import Projections
from tests.conftest import World, open_world

TABLES = {
    "projection_plans": "case_id",
    "projection_registers": "case_id",
    "projection_traces": "case_id, decision_id",
    "projection_audit": "position",
    "projection_tracking": "name",
}


@dataclass
class Projected:
    world: World
    database: Database
    follower: Follower
    queries: Projections


@pytest.fixture
def projected(store_url: str) -> Iterator[Projected]:
    world = open_world(store_url, DecisionRecord)
    database = Database(world.ledger.store)
    try:
        yield Projected(world, database, Follower(world.ledger, database), Projections(database))
    finally:
        database.close()
        world.ledger.close()


def dump(database: Database) -> dict[str, list[Any]]:
    """Every projection table, decoded and in a stable order: what two runs must agree on."""
    tables: dict[str, list[Any]] = {}
    for table, order in TABLES.items():
        rows = database.query(f"SELECT * FROM {table} ORDER BY {order}")
        tables[table] = [
            [msgspec.json.decode(bytes(v)) if isinstance(v, bytes | memoryview) else v for v in r]
            for r in rows
        ]
    return tables
