"""Twin ledgers for group-commit tests: two stores of one kind with the same directory, one
answering a batch through `submit_many`, the other the same statements one by one through
`submit`, so that every answer of the first can be compared with what `submit` says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import keys
from ledger.author import Author
from ledger.errors import LedgerError
from ledger.ledger import Accepted, Ledger
from tests.conftest import ORIGIN, PG_DSN, create_schema, drop_schema

Answer = Accepted | LedgerError
# What two ledgers must agree on: ("accepted", created, stream, seq) or ("rejected", code).
Outcome = tuple[str, bool, str, int] | tuple[str, str]


def outcome(answer: Answer) -> Outcome:
    if isinstance(answer, Accepted):
        return ("accepted", answer.created, answer.receipt.stream, answer.receipt.seq)
    return ("rejected", answer.code)


def one_by_one(ledger: Ledger, batch: Sequence[bytes]) -> list[Answer]:
    """What `submit` answers for each submission, in order."""
    answers: list[Answer] = []
    for data in batch:
        try:
            answers.append(ledger.submit(data))
        except LedgerError as exc:
            answers.append(exc)
    return answers


@dataclass
class Twins:
    """Two ledgers on two stores of one kind, whose directories hold the same statements."""

    batch: Ledger  # answers through submit_many
    single: Ledger  # answers through submit, one by one
    authority_key: keys.Ed25519PrivateKey
    authority: Author
    people: dict[str, Author] = field(default_factory=dict)

    @property
    def ledgers(self) -> tuple[Ledger, Ledger]:
        return (self.batch, self.single)

    def both(self, submission: bytes) -> Accepted:
        """Submit to both ledgers, where it must be accepted at the same place."""
        first, second = (ledger.submit(submission) for ledger in self.ledgers)
        assert outcome(first) == outcome(second)
        return first

    def directory(self, kind: str, body: dict[str, Any]) -> bytes:
        """A directory statement signed by the authority (not submitted)."""
        return self.authority.submission(str(self.batch.directory_id), kind, body)

    def registration(self, name: str, kind: str = "adult", **details: str) -> tuple[str, bytes]:
        """A new person's id and the statement registering them (not submitted)."""
        person = str(uuid.uuid4())
        body = {"person": person, "name": name, "kind": kind, **details}
        return person, self.directory("person.registered", body)

    def binding(self, person: str, public: keys.Ed25519PublicKey) -> bytes:
        """The statement binding a key to a person (not submitted)."""
        body = {
            "person": person,
            "kid": keys.kid(public),
            "public_key": keys.public_key_b64(public),
        }
        return self.directory("key.bound", body)

    def person(self, name: str, kind: str = "adult", **details: str) -> Author:
        """Register `name` (once) with a fresh bound key in both directories."""
        if name not in self.people:
            person, registration = self.registration(name, kind, **details)
            self.both(registration)
            key = keys.generate()
            self.both(self.binding(person, key.public_key()))
            self.people[name] = Author(ORIGIN, person, key)
        return self.people[name]


@contextmanager
def open_twins(store_url: str, tmp_path: Path, cls: type[Ledger] = Ledger) -> Iterator[Twins]:
    """Twin ledgers of class `cls`: one on `store_url`, one on a second store of its kind."""
    schema = None
    if store_url.startswith("sqlite"):
        twin_url = f"sqlite:///{tmp_path / 'twin.db'}"
    else:
        schema = create_schema()
        twin_url = f"{PG_DSN}?schema={schema}"
    authority_key = keys.generate()
    opened: list[Ledger] = []
    try:
        for url in (store_url, twin_url):
            opened.append(cls(url, ORIGIN, authority_key.public_key()))
        authority_id = str(uuid.uuid4())
        authority = Author(ORIGIN, authority_id, authority_key)
        twins = Twins(opened[0], opened[1], authority_key, authority)
        body = {"person": authority_id, "name": "Clinic authority", "kind": "authority"}
        twins.both(twins.directory("person.registered", body))
        twins.both(twins.binding(authority_id, authority_key.public_key()))
        yield twins
    finally:
        for ledger in opened:
            ledger.close()
        if schema is not None:
            drop_schema(schema)
