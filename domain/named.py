"""The people and organisations a case statement names in its structured fields, for what a
bundle discloses.

An evidence bundle carries the directory entries of the people and organisations a case
names, and of no one else; free text may quote any id, so only the typed fields that name a
person or an organisation count.
"""

from __future__ import annotations

from domain import bodies as b
from ledger.statement import Header

# The body fields that hold a person id (or a list of them). Every other id a body holds names
# an organisation (below) or a thing of the case: a decision, proposal or action, or an entry.
PEOPLE_FIELDS = ("child", "lead", "person", "required", "owner")
# The top-level body fields that hold a registered organisation's id; a sharing consent's
# scope and a share made under consent name one too (see `organisations`).
ORGANISATION_FIELDS = ("organisation",)


def named(header: Header) -> list[str]:
    """The person and organisation ids a stored statement's body names in fields that name
    them (the header's author and `for` are the ledger's own to add); none for a directory
    statement."""
    if header.kind not in b.BODIES:
        return []
    body = b.read_body(header)
    ids: list[str] = []
    for name in PEOPLE_FIELDS:
        value = getattr(body, name, None)
        if isinstance(value, str):
            ids.append(value)
        elif isinstance(value, list):
            ids.extend(value)
    return ids + organisations(body)


def organisations(body: object) -> list[str]:
    """The organisations a case statement's body names: an external partner's, a sharing
    consent's, the recipient of a share under consent."""
    found = [value for name in ORGANISATION_FIELDS if (value := getattr(body, name, None))]
    if isinstance(body, b.ConsentGiven | b.ConsentRefused) and isinstance(
        body.scope, b.SharingScope
    ):
        found.append(body.scope.organisation)
    elif isinstance(body, b.InformationShared) and body.basis == "consent":
        found.append(body.recipient)  # under consent, the consent's organisation by its id
    return found
