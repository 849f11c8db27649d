"""The people a case statement names in its structured fields, for what a bundle discloses.

An evidence bundle carries the directory entries of the people a case names, and of no one
else; free text may quote any id, so only the typed fields that name a person count.
"""

from __future__ import annotations

from domain import bodies as b
from ledger.statement import Header


def named_people(header: Header) -> list[str]:
    """The person ids a stored statement's body names in fields that name people (the
    header's author and `for` are the ledger's own to add)."""
    return _people(b.read_body(header))


def _people(body: b.Body) -> list[str]:
    if isinstance(body, b.CaseOpened):
        return [body.child, body.lead]
    if isinstance(body, b.ParticipantJoined | b.ParticipantLeft | b.CapacityAssessed):
        return [body.person]
    if isinstance(body, b.DecisionOpened):
        return list(body.required)
    if isinstance(body, b.ActionAssigned):
        return [body.owner]
    return []
