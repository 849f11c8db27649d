"""Bearer tokens: issued once by the CLI, kept only as a SHA-256 digest, bound to a person and
one scope.

A token reads `accord_<token id>_<secret>`: the id (a UUID in hex) finds the record, the
secret (32 random bytes, base64url) is checked against its digest in constant time. The
secret has 256 bits of entropy, so a plain SHA-256 is enough; a slow password hash would
only slow every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from ledger import access
from ledger.directory import Directory
from ledger.errors import LedgerError
from ledger.ledger import Ledger

PREFIX = "accord_"


class Scope(StrEnum):
    """What a token lets its person do."""

    MEMBER = "member"  # read the cases they are a member of
    REVIEWER = "reviewer"  # read every case; every read is recorded
    SERVICE = "service"  # subscribe to events (limited to one organisation if given)
    ADMIN = "admin"  # directory operations and the access log


class TokenError(LedgerError):
    """A token cannot be issued or revoked as asked."""

    code = "token"


@dataclass(frozen=True)
class Grant:
    """Who a valid token speaks for, and what it allows."""

    token: str  # the token id, safe to log and to show in the access log
    person: str
    scope: Scope
    organisation: str | None


def issue(ledger: Ledger, person: str, scope: Scope, organisation: str | None = None) -> str:
    """Issue a token; the returned string is the only copy of its secret."""
    directory = ledger.directory()
    known = directory.persons.get(person)
    if known is None:
        raise TokenError(f"no person {person} in the directory")
    # R19: a token's scope follows the person's appointment or kind.
    if scope is Scope.SERVICE and known.kind != "service":
        raise TokenError(f"{known.name} is not a service; service tokens are for services only")
    if scope is not Scope.SERVICE and known.kind == "service":
        raise TokenError(f"{known.name} is a service; a service gets only service tokens")
    if not in_office(directory, person, scope):
        raise TokenError(f"{known.name} is not an appointed {_OFFICES[scope]}")
    if organisation is not None:
        if scope is not Scope.SERVICE:
            raise TokenError("only a service token is limited to an organisation")
        if organisation not in directory.organisations:
            raise TokenError(
                f"no organisation {organisation} in the directory; "
                "register it with `accord organisation add` and use its id"
            )
    secret = secrets.token_urlsafe(32)
    record = access.issue(ledger, person, scope.value, _digest(secret), organisation)
    return f"{PREFIX}{record.originator_id.hex}_{secret}"


def revoke(ledger: Ledger, token_id: str) -> None:
    """Revoke a token by its id (the part between the prefix and the secret, or a UUID)."""
    try:
        uuid = UUID(token_id)
    except ValueError:
        raise TokenError(f"{token_id!r} is not a token id") from None
    if not access.revoke(ledger, uuid):
        raise TokenError(f"no unrevoked token {token_id}")


def authenticate(book: access.TokenBook, header: str | None) -> Grant | None:
    """The grant of an `Authorization: Bearer` header, or None if it is missing or not valid."""
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110 §11.1)
        return None
    parts = credentials.strip().removeprefix(PREFIX).split("_", 1)
    if len(parts) != 2:
        return None
    token_hex, secret = parts
    try:
        token_id = UUID(hex=token_hex)
    except ValueError:
        return None
    issued = book.valid(token_id)
    if issued is None:
        return None
    if not hmac.compare_digest(issued.digest, _digest(secret)):
        return None
    scope = Scope(issued.scope)
    # Ending an appointment ends its tokens: checked against the directory as it is now, which
    # the ledger caches until the directory changes (in this process or any other).
    if scope in _OFFICES and not in_office(book.ledger.directory(), issued.person, scope):
        return None
    return Grant(token_id.hex, issued.person, scope, issued.organisation)


_OFFICES = {Scope.REVIEWER: "reviewer", Scope.ADMIN: "administrator"}


def in_office(directory: Directory, person: str, scope: Scope) -> bool:
    """Whether the person holds the appointment a token of `scope` needs (if it needs one)."""
    office = _OFFICES.get(scope)
    if office is None:
        return True
    known = directory.persons.get(person)
    return known is not None and known.appointed(office) is not None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()
