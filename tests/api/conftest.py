"""A real Accord server on loopback, on each store, with helpers to add people and tokens."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.app import Settings
from api.client import Client, Identity
from api.home import Home
from api.server import Running, running
from api.tokens import Scope, issue
from domain.record import DecisionRecord
from domain.worked_case import CAST, SCHOOL, Played, birth_date, play
from ledger import keys
from ledger.authority import Authority

ORIGIN = "clinic.example/accord"


@dataclass
class Served:
    """A server answering on a loopback port, and in-process access to what it serves."""

    url: str
    home: Home
    record: DecisionRecord
    authority: Authority
    people: dict[str, Identity] = field(default_factory=dict)
    organisations: dict[str, str] = field(default_factory=dict)

    def organisation(self, name: str) -> str:
        """Register the organisation `name` (once); returns its id."""
        if name not in self.organisations:
            self.organisations[name] = self.authority.register_organisation(name)
        return self.organisations[name]

    def person(self, name: str, kind: str = "adult", **details: str | None) -> Identity:
        """Register `name` (once) with a fresh bound key; returns their signing identity."""
        if name not in self.people:
            person = self.authority.register(name, kind, **details)
            key = keys.generate()
            self.authority.bind(person, key.public_key())
            self.people[name] = Identity(ORIGIN, person, key)
        return self.people[name]

    def reviewer(self, name: str = "Jo Marsh") -> Identity:
        """A person appointed as safeguarding reviewer (once)."""
        identity = self.person(name, "professional", profession="safeguarding reviewer")
        if not self.record.directory().persons[identity.person].reviewer:
            self.authority.appoint_reviewer(identity.person)
        return identity

    def administrator(self, name: str = "Ada Admin") -> Identity:
        """A person appointed as administrator (once)."""
        identity = self.person(name, "professional", profession="administrator")
        if not self.record.directory().persons[identity.person].administrator:
            self.authority.appoint_administrator(identity.person)
        return identity

    def service(self, name: str = "Events") -> Identity:
        """A person of kind `service`, for service tokens."""
        return self.person(name, "service")

    def token(self, identity: Identity, scope: Scope, organisation: str | None = None) -> str:
        return issue(self.record, identity.person, scope, organisation)

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token)

    def play_worked_case(self) -> Played:
        """Register the worked case's people and play it through the API."""
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        authors = {
            p.handle: self.person(
                p.name,
                p.kind,
                profession=p.profession,
                organisation=p.organisation,
                born=birth_date(start) if p.kind == "child" else None,
            ).author
            for p in CAST
        }
        with self.client() as client:
            return play(
                str(uuid.uuid4()),
                authors,
                lambda data: client.submit(data).receipt,
                start,
                self.organisation(SCHOOL),
            )


@contextmanager
def serve_in_thread(home: Home, settings: Settings | None = None) -> Iterator[Running]:
    """Run the server on its own event loop in a thread until the generator is closed."""
    ready: list[Running] = []
    started = threading.Event()
    stop: list[asyncio.Event] = []
    loops: list[asyncio.AbstractEventLoop] = []
    failure: list[BaseException] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        loops.append(asyncio.get_running_loop())
        async with running(home, port=0, settings=settings) as server:
            ready.append(server)
            started.set()
            await stop[0].wait()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield ready[0]
    finally:
        loops[0].call_soon_threadsafe(stop[0].set)
        thread.join(30)


@pytest.fixture
def served(tmp_path: Path, store_url: str) -> Iterator[Served]:
    """A fresh ledger home on the store, served on a free loopback port."""
    home = Home.create(tmp_path / "home", ORIGIN, store_url)
    with serve_in_thread(home) as server:
        record = server.service.record
        yield Served(server.url, home, record, home.authority(record))
