"""The HTTP API's wire types that clients share with the server: what `/v1/ledger`, the proofs,
`/healthz` and `/v1/directory` answer, and an event as a verifier reads it.

Kept apart from the server's modules, so that the client SDK (`api.client`, `api.subscriber`)
imports none of them.
"""

from __future__ import annotations

import msgspec

# The type of the notice an organisation-scoped subscriber gets for a key revocation.
REVOCATION = "accord.key.revocation"


class LedgerInfo(msgspec.Struct):
    """What anyone may know about the ledger: who it is, its keys, and how big it is."""

    origin: str
    authority_key: str
    ledger_key: str
    directory: str
    size: int


class InclusionProof(msgspec.Struct):
    """Leaf `index` is in the tree of `size` leaves: the audit path, standard base64."""

    index: int
    size: int
    path: list[str]


class ConsistencyProof(msgspec.Struct, rename={"from_": "from"}):
    """The tree of `to` leaves extends the tree of `from` leaves: the path, standard base64."""

    from_: int
    to: int
    path: list[str]


class KeyView(msgspec.Struct, omit_defaults=True):
    """A bound key and the window in which it could sign."""

    kid: str
    bound_at: str
    revoked_at: str | None = None
    compromised_since: str | None = None
    reason: str | None = None


class AppointmentView(msgspec.Struct, omit_defaults=True):
    """One term as reviewer or administrator (R19): recorded when, and ended when and why."""

    role: str
    since: str
    until: str | None = None
    reason: str | None = None


class PersonView(msgspec.Struct, omit_defaults=True):
    """Someone in the directory, as an administrator sees them."""

    id: str
    name: str
    kind: str
    keys: list[KeyView]
    profession: str | None = None
    organisation: str | None = None
    reviewer: bool = False
    administrator: bool = False
    appointments: list[AppointmentView] = []


class OrganisationView(msgspec.Struct):
    """A registered organisation: the id cases name it by, and its name."""

    id: str
    name: str
    registered_at: str


class DirectoryView(msgspec.Struct):
    """The directory as an administrator sees it: people and organisations."""

    people: list[PersonView]
    organisations: list[OrganisationView]


class StuckView(msgspec.Struct):
    """A follower that cannot advance: where it stopped, why (one line) and how often in a row."""

    follower: str
    position: int
    error: str
    failures: int


class Health(msgspec.Struct):
    """Liveness, how far the projections are behind the log, and any follower that cannot
    advance (then `status` is "degraded")."""

    status: str
    leader: bool
    projections_lag: int
    stuck: list[StuckView] = msgspec.field(default_factory=list)


class Envelope(msgspec.Struct, frozen=True):
    """A CloudEvent as a verifier reads it: its position (`sequence`), the entry hash the log
    sealed (`entryhash`), and the entry exactly as it was sent (`data`, never re-encoded)."""

    sequence: str
    entryhash: str
    data: msgspec.Raw
