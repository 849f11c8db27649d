"""The people a case statement names in its structured fields, for what a bundle discloses.

An evidence bundle carries the directory entries of the people a case names, and of no one
else; free text may quote any id, so only the typed fields that name a person count.
"""

from __future__ import annotations

from domain import bodies as b
from ledger.statement import Header

# The body fields that hold a person id (or a list of them). Every other id a body holds names
# a thing of the case: a decision, proposal or action, or an entry by its hash.
PEOPLE_FIELDS = ("child", "lead", "person", "required", "owner")


def named_people(header: Header) -> list[str]:
    """The person ids a stored statement's body names in fields that name people (the
    header's author and `for` are the ledger's own to add); none for a directory statement."""
    if header.kind not in b.BODIES:
        return []
    body = b.read_body(header)
    named: list[str] = []
    for name in PEOPLE_FIELDS:
        value = getattr(body, name, None)
        if isinstance(value, str):
            named.append(value)
        elif isinstance(value, list):
            named.extend(value)
    return named
