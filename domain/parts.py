"""The parts a case is folded into: members, proposals, opinions, the child's views,
agreements, consents, decisions, shares and actions, and references to entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import msgspec

from domain import bodies as b


@dataclass
class Member:
    person: str
    role: str
    parental_responsibility: bool
    organisation: str | None
    joined_at: str
    left_at: str | None = None

    @property
    def active(self) -> bool:
        return self.left_at is None


@dataclass
class Proposal:
    id: str
    hash: str
    title: str
    do_nothing: bool
    by: str
    made_at: str
    withdrawn_at: str | None = None


# What a case keeps for every entry (this and EntryRef) are Structs without GC tracking: plain
# values, never in cycles, and cheaper to make than dataclasses.
class Opinion(msgspec.Struct, gc=False):
    person: str
    proposal: str
    proposal_hash: str
    stance: str
    hash: str
    recorded_at: str


@dataclass
class ChildView:
    hash: str
    by: str
    on_behalf: bool
    view: str
    method: str
    recorded_at: str
    feedback: list[str] = field(default_factory=list)


@dataclass
class Agreement:
    person: str
    proposal_hash: str
    hash: str
    recorded_at: str


@dataclass
class Consent:
    hash: str
    by: str
    given: bool  # False: a recorded refusal
    scope: b.TreatmentScope | b.SharingScope
    decision: str | None
    recorded_at: str
    withdrawn_at: str | None = None

    def active_at(self, recorded_at: str) -> bool:
        """True for a consent given, not withdrawn by then, and (for sharing) not expired."""
        if not self.given or (self.withdrawn_at is not None and self.withdrawn_at <= recorded_at):
            return False
        if isinstance(self.scope, b.SharingScope):
            return recorded_at[:10] <= self.scope.until.isoformat()
        return True


@dataclass
class Decision:
    id: str
    question: str
    required: list[str]
    opened_by: str
    opened_at: str
    revisits: str | None
    context: str = ""
    proposals: dict[str, Proposal] = field(default_factory=dict)
    opinions: list[Opinion] = field(default_factory=list)
    child_views: list[ChildView] = field(default_factory=list)
    not_obtained: list[str] = field(default_factory=list)  # hashes of child_view.not_obtained
    capacity: dict[str, bool] = field(default_factory=dict)
    agreements: dict[str, Agreement] = field(default_factory=dict)
    dissents: list[str] = field(default_factory=list)
    deferred_until: date | None = None
    agreed_hash: str | None = None
    agreed_at: str | None = None
    superseded_by: str | None = None

    def live_proposals(self) -> list[Proposal]:
        return [p for p in self.proposals.values() if p.withdrawn_at is None]

    def proposal_by_hash(self, proposal_hash: str) -> Proposal | None:
        for proposal in self.proposals.values():
            if proposal.hash == proposal_hash:
                return proposal
        return None

    @property
    def child_heard(self) -> bool:
        """R6: a view was recorded, or a reason was given why it could not be."""
        return bool(self.child_views or self.not_obtained)

    @property
    def real_options(self) -> bool:
        """R7: at least two proposals are on the table (doing nothing counts as one)."""
        return len(self.live_proposals()) >= 2

    def unanimous_on(self, agreements: dict[str, Agreement]) -> str | None:
        """The proposal hash every required participant agrees on, if there is one."""
        hashes = {agreements[p].proposal_hash for p in self.required if p in agreements}
        if len(hashes) == 1 and all(p in agreements for p in self.required):
            return hashes.pop()
        return None


class EntryRef(msgspec.Struct, gc=False):
    """What the case remembers of every entry: who said what kind of thing, and when."""

    hash: str
    seq: int
    kind: str
    by: str
    on_behalf_of: str | None
    at: str
    recorded_at: str
    late: bool
    decision: str | None
    body: Any
    about: str | None = None  # the entry it is about: a consent withdrawn, an entry corrected


@dataclass
class Share:
    hash: str
    recipient: str
    purpose: str
    basis: str
    consent: str | None
    justification: str
    by: str
    recorded_at: str

    @property
    def safeguarding(self) -> bool:
        return self.basis == "safeguarding"


@dataclass
class Action:
    id: str
    decision: str
    owner: str
    due: date
    assigned_by: str
    completed_at: str | None = None
