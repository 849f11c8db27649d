"""Shared fixtures: every store-backed test runs on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from ledger import keys
from ledger.author import Author
from ledger.authority import Authority
from ledger.ledger import Ledger
from ledger.store import parse_store

ORIGIN = "clinic.example/accord"
PG_DSN = os.environ.get("ACCORD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_DSN} is not answering: {str(exc).strip()}"


_POSTGRES_PROBLEM = _postgres_problem()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL of each kind (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL store URL, for what only PostgreSQL does."""
    require_postgres()
    schema = create_schema()
    try:
        yield f"{PG_DSN}?schema={schema}"
    finally:
        drop_schema(schema)


@pytest.fixture(autouse=True)
def _postgres_for_marked_classes(request: pytest.FixtureRequest) -> None:
    """Test classes that set `needs_postgres` skip or fail like the `store_url` fixture."""
    if getattr(request.cls, "needs_postgres", False):
        require_postgres()


def require_postgres() -> None:
    """Skip (locally) or fail (in CI) when the PostgreSQL server does not answer."""
    if _POSTGRES_PROBLEM is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires PostgreSQL: {_POSTGRES_PROBLEM}")
        pytest.skip(_POSTGRES_PROBLEM)


def create_schema() -> str:
    """A new, empty PostgreSQL schema for one test."""
    schema = f"accord_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@dataclass
class World:
    """An opened ledger with its authority, and helpers to add people with bound keys."""

    ledger: Ledger
    authority_key: keys.Ed25519PrivateKey
    authority: Authority
    people: dict[str, Author] = field(default_factory=dict)
    organisations: dict[str, str] = field(default_factory=dict)

    def organisation(self, name: str) -> str:
        """Register the organisation `name` (once); returns its id."""
        if name not in self.organisations:
            self.organisations[name] = self.authority.register_organisation(name)
        return self.organisations[name]

    def person(self, name: str, kind: str = "adult", **details: str | None) -> Author:
        """Register `name` with a fresh bound key (once) and return them as an author."""
        if name not in self.people:
            person = self.authority.register(name, kind, **details)
            key = keys.generate()
            self.authority.bind(person, key.public_key())
            self.people[name] = Author(self.ledger.origin, person, key)
        return self.people[name]

    def reopen(self) -> Ledger:
        """A second, cold ledger instance on the same store (no cached state)."""
        cls = type(self.ledger)
        return cls(self.ledger.store, self.ledger.origin, self.authority_key.public_key())


def open_world(store_url: str, cls: type[Ledger] = Ledger) -> World:
    """A ledger of class `cls` on the store, with its directory opened by a fresh authority."""
    authority_key = keys.generate()
    ledger = cls(store_url, ORIGIN, authority_key.public_key())
    authority = Authority(ledger, authority_key)
    authority.open("Clinic authority")
    return World(ledger, authority_key, authority)


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    opened = open_world(store_url)
    try:
        yield opened
    finally:
        opened.ledger.close()


@pytest.fixture
def postgres_world(postgres_url: str) -> Iterator[World]:
    opened = open_world(postgres_url)
    try:
        yield opened
    finally:
        opened.ledger.close()


def fingerprint(ledger: Ledger) -> tuple[int, int, str]:
    """What must not change when a submission is rejected: rows, entries and the last hash."""
    entries = list(ledger.read_log())
    return (
        ledger.recorder.max_notification_id() or 0,
        len(entries),
        entries[-1].entry.hash if entries else "",
    )


def tamper(
    store_url: str,
    stream: uuid.UUID,
    seq: int,
    state: bytes | None,
    application: type[Ledger] = Ledger,
) -> None:
    """Overwrite (or, with None, delete) a stored entry behind the ledger's back (on
    PostgreSQL the table is named after the application class)."""
    store = parse_store(store_url)
    if store.is_postgres:
        table = f'"{store.env["POSTGRES_SCHEMA"]}".{application.name.lower()}_events'
        where = "WHERE originator_id = %s AND originator_version = %s"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            if state is None:
                conn.execute(f"DELETE FROM {table} {where}", (stream, seq))
            else:
                conn.execute(f"UPDATE {table} SET state = %s {where}", (state, stream, seq))
        return
    where = "WHERE originator_id = ? AND originator_version = ?"
    with sqlite3.connect(store.env["SQLITE_DBNAME"]) as conn:
        if state is None:
            conn.execute(f"DELETE FROM stored_events {where}", (stream.hex, seq))
        else:
            conn.execute(f"UPDATE stored_events SET state = ? {where}", (state, stream.hex, seq))
