"""The directory's statement kinds: a typed, bounded body for each (registering people and
organisations, binding and revoking keys, appointing and removing reviewers and administrators)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from ledger.statement import KID_PATTERN, Kid, Statement, Text, Timestamp, Uuid
from ledger.statement import parse_body as statement_body

PersonKind = Literal["authority", "child", "adult", "professional", "service"]
PublicKey = Annotated[str, msgspec.Meta(pattern=KID_PATTERN)]  # also 43 base64url characters


class _Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class PersonRegistered(_Body):
    """`person.registered`: a person (or service) the ledger knows."""

    person: Uuid
    name: Text
    kind: PersonKind
    profession: Text | None = None
    organisation: Text | None = None
    born: date | None = None


class KeyBound(_Body):
    """`key.bound`: an Ed25519 public key now speaks for a person."""

    person: Uuid
    kid: Kid
    public_key: PublicKey


class KeyRevoked_(_Body):
    """`key.revoked`: a key stops being valid; with `compromised_since`, retroactively."""

    kid: Kid
    reason: Text
    compromised_since: Timestamp | None = None


class ReviewerAppointed(_Body):
    """`reviewer.appointed`: a person may read every case as a safeguarding reviewer."""

    person: Uuid


class ReviewerRemoved(_Body):
    """`reviewer.removed`: a reviewer's appointment ends, and with it their reviewer tokens."""

    person: Uuid
    reason: Text


class AdministratorAppointed(_Body):
    """`administrator.appointed`: a person may run the directory and read the access log."""

    person: Uuid


class AdministratorRemoved(_Body):
    """`administrator.removed`: an administrator's appointment ends, and their admin tokens."""

    person: Uuid
    reason: Text


class OrganisationRegistered(_Body):
    """`organisation.registered`: an organisation cases may share with, named by its id."""

    organisation: Uuid
    name: Text


BODIES: dict[str, type[_Body]] = {
    "person.registered": PersonRegistered,
    "key.bound": KeyBound,
    "key.revoked": KeyRevoked_,
    "reviewer.appointed": ReviewerAppointed,
    "reviewer.removed": ReviewerRemoved,
    "administrator.appointed": AdministratorAppointed,
    "administrator.removed": AdministratorRemoved,
    "organisation.registered": OrganisationRegistered,
}


def parse_body(statement: Statement) -> Any:
    """Validate a directory statement's body against the Struct for its kind."""
    return statement_body(statement, BODIES, "directory")
