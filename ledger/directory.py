"""The directory stream: people and the keys bound to them, which key was valid when (R2), the
organisations cases share with, and who is appointed reviewer or administrator when (R19)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

from ledger.clock import normalise, parse_timestamp
from ledger.directory_bodies import (
    AdministratorAppointed,
    AdministratorRemoved,
    KeyBound,
    KeyRevoked_,
    OrganisationRegistered,
    PersonRegistered,
    ReviewerAppointed,
    ReviewerRemoved,
    parse_body,
)
from ledger.directory_records import Appointment, KeyRecord, Organisation, Person
from ledger.entry import Entry
from ledger.errors import KeyRevoked, Malformed, NotPermitted, UnknownKey
from ledger.keys import (
    Ed25519PublicKey,
    bound_public_key,
    kid,
    public_key_b64,
    public_key_from_b64,
)
from ledger.statement import Statement
from ledger.stream import Stream
from ledger.text import check_texts

_DIRECTORY_NAMESPACE = UUID("0b8f5d8e-3f7c-5a55-8d0e-6a3b1f0c9e27")


def directory_id(origin: str) -> UUID:
    """The directory stream's id, derived from the ledger's origin so no one has to store it."""
    return uuid5(_DIRECTORY_NAMESPACE, origin)


class Directory(Stream):
    """The directory's state: people, keys with their validity windows, and the authority."""

    def __init__(self, stream_id: UUID) -> None:
        super().__init__(stream_id)
        self.persons: dict[str, Person] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.organisations: dict[str, Organisation] = {}
        self.authority: str | None = None
        self.authority_kid: str | None = None

    def apply(self, entry: Entry) -> None:
        super().apply(entry)
        self.apply_body(entry)

    def apply_body(self, entry: Entry) -> None:
        """Fold in what an entry says, without the chain checks (for a partial directory)."""
        statement = entry.statement
        body = parse_body(statement)
        if isinstance(body, PersonRegistered):
            self.persons[body.person] = Person(
                body.person,
                body.name,
                body.kind,
                body.profession,
                body.organisation,
                body.born.isoformat() if body.born else None,
            )
            if body.kind == "authority" and self.authority is None:
                self.authority = body.person
        elif isinstance(body, KeyBound):
            owner = self._registered(body.person)
            public, unusable = bound_public_key(body.public_key)
            self.keys[body.kid] = KeyRecord(
                body.kid, body.person, public, entry.recorded_at, unusable=unusable
            )
            owner.keys.append(body.kid)
            if entry.seq == 2:
                self.authority_kid = body.kid
        elif isinstance(body, KeyRevoked_):
            record = self.keys.get(body.kid)
            if record is None:
                raise UnknownKey(f"key {body.kid} is not bound to anyone in the directory")
            record.revoked_at = entry.recorded_at
            record.reason = body.reason
            if body.compromised_since is not None:
                record.compromised_since = normalise(body.compromised_since)
        elif isinstance(body, ReviewerAppointed | AdministratorAppointed):
            role = _role(body)
            appointed = self._registered(body.person)
            if appointed.appointed(role) is None:
                appointed.appointments.append(Appointment(role, entry.recorded_at))
        elif isinstance(body, ReviewerRemoved | AdministratorRemoved):
            term = self._registered(body.person).appointed(_role(body))
            if term is not None:
                term.until, term.reason = entry.recorded_at, body.reason
        elif isinstance(body, OrganisationRegistered):
            self.organisations[body.organisation] = Organisation(
                body.organisation, body.name, entry.recorded_at
            )

    def organisation_name(self, organisation: str | None) -> str | None:
        """The registered name of an organisation id, or None if it is not registered."""
        known = self.organisations.get(organisation or "")
        return known.name if known is not None else None

    def resolve(self, statement: Statement) -> KeyRecord:
        """The key record for the statement's `kid`, which must be bound to its author."""
        record = self.keys.get(statement.kid)
        if record is None:
            raise UnknownKey(f"key {statement.kid} is not bound to anyone in the directory")
        if record.person != statement.by:
            raise UnknownKey(f"key {statement.kid} is not bound to person {statement.by}")
        if record.unusable is not None:
            raise UnknownKey(f"key {statement.kid} is {record.unusable}")
        return record

    def signer(
        self, entry: Entry, authority: Ed25519PublicKey, authority_kid: str | None
    ) -> tuple[Ed25519PublicKey | None, str | None]:
        """The key to check a stored entry's signature with (None: there is none to check it
        with), and what else is wrong with the key, if anything. Directory entries are signed
        with `authority`, whose kid is `authority_kid`; others with their author's key, valid
        when the entry was recorded."""
        statement = entry.statement
        # A statement's stream is a lowercase hyphenated UUID: equal strings, equal UUIDs.
        if statement.stream == self.key:
            if statement.kid != authority_kid:
                return (
                    None,
                    f"directory entries are signed with the authority key, not {statement.kid}",
                )
            return authority, None
        problem = self.key_problem(statement.kid, statement.by, entry.recorded_at)
        record = self.keys.get(statement.kid)
        if record is None or record.person != statement.by or record.unusable is not None:
            return None, problem
        return record.public, problem

    def entry_problem(
        self, entry: Entry, authority: Ed25519PublicKey, authority_kid: str | None
    ) -> str | None:
        """What is wrong with a stored entry's signature or key (see `signer`), if anything."""
        public, problem = self.signer(entry, authority, authority_kid)
        if public is not None and not entry.signature_valid(public):
            return "the signature does not verify: the entry was altered"
        return problem

    def key_problem(self, key_id: str, by: str, recorded_at: str) -> str | None:
        """Why `key_id` cannot vouch for `by`'s entry recorded then, or None when it can."""
        record = self.keys.get(key_id)
        if record is None or record.person != by:
            return f"key {key_id} is not bound to the author {by}"
        if key_id == self.authority_kid and record.unusable is None:
            return None  # the root of trust: valid from the directory's first entry
        return record.problem_at(recorded_at)

    def check_valid(self, record: KeyRecord, recorded_at: str) -> None:
        """Raise `KeyRevoked` unless `record` may sign an entry recorded at `recorded_at`."""
        problem = record.problem_at(recorded_at)
        if problem is not None:
            raise KeyRevoked(problem)

    def admit(self, statement: Statement, signer: Ed25519PublicKey) -> None:
        """Check a directory statement against the directory's rules before it is appended."""
        body = parse_body(statement)
        check_texts(statement.body)
        if self.version == 0:
            self._admit_genesis(statement, body)
            return
        if self.version == 1:
            self._admit_authority_key(statement, body, signer)
            return
        if statement.by != self.authority:
            raise NotPermitted("only the authority writes to the directory")
        if isinstance(body, PersonRegistered):
            if body.person in self.persons:
                raise NotPermitted(f"person {body.person} is already registered")
            if body.kind == "authority":
                raise NotPermitted("a ledger has exactly one authority")
            # A day's grace: where the person was born, the date may already be tomorrow's.
            latest = parse_timestamp(statement.at).date() + timedelta(days=1)
            if body.born is not None and body.born > latest:
                raise Malformed(f"body.born: {body.born} is in the future")
        elif isinstance(body, KeyBound):
            self._registered(body.person)
            if kid(public_key_from_b64(body.public_key)) != body.kid:
                raise Malformed("kid is not the SHA-256 of the public key")
            if body.kid in self.keys:
                raise NotPermitted(f"key {body.kid} is already bound; a key is bound only once")
        elif isinstance(body, KeyRevoked_):
            record = self.keys.get(body.kid)
            if record is None:
                raise UnknownKey(f"key {body.kid} is not bound to anyone in the directory")
            if record.revoked_at is not None:
                raise KeyRevoked(f"key {body.kid} is already revoked")
            if body.kid == self.authority_kid:
                raise NotPermitted("the authority key, the root of trust, cannot be revoked")
        elif isinstance(body, ReviewerAppointed | AdministratorAppointed):
            person = self._registered(body.person)
            role = _role(body)
            if person.appointed(role) is not None:
                raise NotPermitted(f"{person.name} is already an appointed {role}")
            if person.kind not in ("adult", "professional"):
                raise NotPermitted(
                    f"{person.name} is of kind {person.kind}; only adults and professionals"
                    f" are appointed {role}"
                )
        elif isinstance(body, ReviewerRemoved | AdministratorRemoved):
            person = self._registered(body.person)
            role = _role(body)
            if person.appointed(role) is None:
                raise NotPermitted(f"{person.name} is not an appointed {role}")
        elif isinstance(body, OrganisationRegistered) and (
            body.organisation in self.organisations or body.organisation in self.persons
        ):
            raise NotPermitted(f"organisation {body.organisation} is already registered")

    def _admit_genesis(self, statement: Statement, body: Any) -> None:
        if not (
            isinstance(body, PersonRegistered)
            and body.kind == "authority"
            and body.person == statement.by
        ):
            raise NotPermitted("the directory opens with the authority registering itself")

    def _admit_authority_key(
        self, statement: Statement, body: Any, signer: Ed25519PublicKey
    ) -> None:
        if not (
            isinstance(body, KeyBound)
            and statement.by == self.authority
            and body.person == self.authority
            and body.public_key == public_key_b64(signer)
            and body.kid == statement.kid
        ):
            raise NotPermitted("the directory's second entry binds the authority key")

    def _registered(self, person: str) -> Person:
        registered = self.persons.get(person)
        if registered is None:
            raise NotPermitted(f"person {person} is not registered")
        return registered


def _role(body: Any) -> str:
    """The appointment an appointment or removal statement is about."""
    return "reviewer" if isinstance(body, ReviewerAppointed | ReviewerRemoved) else "administrator"
