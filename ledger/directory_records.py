"""What the directory says of each person, key and organisation: a key's validity window, a
person's appointments, an organisation's name."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.keys import Ed25519PublicKey


@dataclass
class KeyRecord:
    """A bound key and the window in which it was valid."""

    kid: str
    person: str
    public: Ed25519PublicKey
    bound_at: str
    revoked_at: str | None = None
    compromised_since: str | None = None
    reason: str | None = None
    unusable: str | None = None  # why nothing verifies under the key (see `bound_public_key`)

    def problem_at(self, recorded_at: str) -> str | None:
        """Why this key cannot vouch for an entry recorded at `recorded_at`, or None if it can."""
        if self.unusable is not None:
            return f"key {self.kid} is {self.unusable}"
        if recorded_at < self.bound_at:
            return f"key {self.kid} was not yet bound at {recorded_at}"
        if self.compromised_since is not None and recorded_at >= self.compromised_since:
            return f"key {self.kid} was compromised from {self.compromised_since}"
        if self.revoked_at is not None and recorded_at >= self.revoked_at:
            return f"key {self.kid} was revoked at {self.revoked_at}"
        return None


@dataclass
class Appointment:
    """One term as reviewer or administrator: when it was recorded, and when and why it ended."""

    role: str
    since: str
    until: str | None = None
    reason: str | None = None

    def at(self, recorded_at: str) -> bool:
        """Whether the term covers that time."""
        return self.since <= recorded_at and (self.until is None or recorded_at < self.until)


@dataclass
class Organisation:
    """A registered organisation: cases name it by id, people read its name."""

    id: str
    name: str
    registered_at: str


@dataclass
class Person:
    """A registered person and what the directory says of them."""

    id: str
    name: str
    kind: str
    profession: str | None
    organisation: str | None
    born: str | None
    keys: list[str] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)  # oldest first

    def appointed(self, role: str) -> Appointment | None:
        """Their current term in `role` ("reviewer" or "administrator"), if any."""
        for term in self.appointments:
            if term.role == role and term.until is None:
                return term
        return None

    @property
    def reviewer(self) -> bool:
        """Whether they are an appointed reviewer now."""
        return self.appointed("reviewer") is not None

    @property
    def administrator(self) -> bool:
        """Whether they are an appointed administrator now."""
        return self.appointed("administrator") is not None

    def reviewer_at(self, recorded_at: str) -> bool:
        """Whether they were an appointed reviewer at that time (a replay asks of the past)."""
        return self.appointed_at("reviewer", recorded_at)

    def appointed_at(self, role: str, recorded_at: str) -> bool:
        """Whether they held an appointment in `role` at that time."""
        return any(t.role == role and t.at(recorded_at) for t in self.appointments)
