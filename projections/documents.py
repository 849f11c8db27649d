"""The read models' documents: typed, stable-ordered msgspec Structs built from case state."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import msgspec

from domain import bodies as b
from domain.case import Case
from domain.parts import Decision, EntryRef
from ledger.directory import Directory


# gc=False: documents are trees of plain values, never cycles; a rebuild makes millions.
class Doc(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True, gc=False):
    """Base of every document."""


class Person(Doc):
    id: str
    name: str


class MemberView(Doc):
    person: Person
    role: str
    joined_at: str
    parental_responsibility: bool = False
    organisation: str | None = None  # a registered organisation's id
    left_at: str | None = None
    organisation_name: str | None = None  # its registered name


class ProposalView(Doc):
    id: str
    hash: str
    title: str
    by: Person
    made_at: str
    description: str = ""
    benefits: str = ""
    risks: str = ""
    do_nothing: bool = False
    withdrawn_at: str | None = None


class OpinionView(Doc):
    person: Person
    proposal: str
    stance: str
    hash: str
    recorded_at: str
    latest: bool
    reasons: str = ""
    what_matters: str = ""


class FeedbackView(Doc):
    hash: str
    by: Person
    influence: str
    recorded_at: str


class ChildViewView(Doc):
    hash: str
    view: str
    method: str
    recorded_by: Person
    on_behalf: bool
    recorded_at: str
    support: str = ""
    sharing_wishes: str = ""
    feedback: list[FeedbackView] = []


class AgreementView(Doc):
    person: Person
    proposal_hash: str
    hash: str
    recorded_at: str


class DecisionView(Doc):
    id: str
    question: str
    status: str
    opened_by: Person
    opened_at: str
    required: list[Person]
    proposals: list[ProposalView]
    opinions: list[OpinionView]
    child_views: list[ChildViewView]
    not_obtained: list[str]
    agreements: list[AgreementView]
    still_to_agree: list[Person]
    missing: list[str]
    dissents: list[str]
    context: str = ""
    revisits: str | None = None
    superseded_by: str | None = None
    deferred_until: date | None = None
    agreed_hash: str | None = None
    agreed_at: str | None = None


class ConsentView(Doc):
    hash: str
    by: Person
    given: bool
    scope: b.TreatmentScope | b.SharingScope
    basis: str
    recorded_at: str
    decision: str | None = None
    withdrawn_at: str | None = None
    organisation_name: str | None = None  # a sharing scope's organisation, by registered name


class ShareView(Doc):
    hash: str
    recipient: str
    purpose: str
    basis: str
    by: Person
    recorded_at: str
    safeguarding: bool
    consent: str | None = None
    justification: str = ""
    recipient_name: str | None = None  # a registered organisation's name, for an id


class ActionView(Doc):
    id: str
    decision: str
    owner: Person
    due: date
    completed_at: str | None = None


class Plan(Doc):
    """A case's current plan (the README, Projections)."""

    case: str
    title: str
    child: Person
    lead: Person
    members: list[MemberView]
    preferences: dict[str, Any]
    decisions: list[DecisionView]
    actions: list[ActionView]
    reviews: list[tuple[str, date]]
    late_entries: list[str]
    concerns: list[str]
    version: int
    recorded_at: str


class Register(Doc):
    """A case's consents and information sharing, safeguarding shares flagged."""

    case: str
    consents: list[ConsentView]
    shares: list[ShareView]


class Trace(Doc):
    """How one decision was reached: every statement about it, in order, with timings."""

    case: str
    decision: DecisionView
    steps: list[TraceStep]
    consents: list[ConsentView]
    shares: list[ShareView]


class TraceStep(Doc):
    seq: int
    kind: str
    by: Person
    recorded_at: str
    at: str
    hash: str
    late: bool
    on_behalf_of: Person | None = None
    corrected_by: list[str] = []


class AuditRow(Doc):
    """One entry as a reviewer sees it."""

    position: int
    stream: str
    seq: int
    kind: str
    by: Person
    role: str | None
    at: str
    recorded_at: str
    late: bool
    hash: str
    kid: str
    on_behalf_of: Person | None = None
    corrected_by: list[str] = []
    signature: str = ""  # filled in when read: a later compromise changes it


class AccessRow(Doc):
    """One recorded read: who read which case, what, when, and with which token."""

    position: int
    stream: str
    what: str
    by: Person
    token: str
    at: str


# Struct fields keep their order, dict keys are sorted: the same document, the same bytes.
encode = msgspec.json.Encoder(order="deterministic").encode


def encode_row(doc: Any) -> bytearray:
    """`encode`, as a bytearray: for rows written by the thousand, since Python's sqlite3
    looks for an adapter for every bytes parameter it binds, but not for a bytearray."""
    return bytearray(encode(doc))


class Builder:
    """Builds documents from a case's state, naming people from the directory."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        # One Person per id, shared by every document built from this directory (per-entry
        # loops look here first, a call per lookup being what they would spend most on); a
        # decision's view encoded once per case version, for its case's plan and its trace.
        self.people: dict[str, Person] = {}
        self._decisions: dict[tuple[str, str, int], msgspec.Raw] = {}

    def person(self, person_id: str | None) -> Person:
        key = person_id or ""
        person = self.people.get(key)
        if person is None:
            known = self.directory.persons.get(key)
            person = self.people[key] = Person(key, known.name if known else "unknown")
        return person

    def plan(self, case: Case) -> Plan:
        return self._plan(case, [self.decision(case, d) for d in case.decisions.values()])

    def plan_json(self, case: Case) -> bytes:
        """The plan, encoded."""
        decisions = [self._decision_json(case, d) for d in case.decisions.values()]
        return encode(self._plan(case, cast(list[DecisionView], decisions)))

    def _plan(self, case: Case, decisions: list[DecisionView]) -> Plan:
        return Plan(
            case=case.key,
            title=case.title,
            child=self.person(case.child),
            lead=self.person(case.lead),
            members=[
                MemberView(
                    self.person(m.person),
                    m.role,
                    m.joined_at,
                    m.parental_responsibility,
                    m.organisation,
                    m.left_at,
                    self.directory.organisation_name(m.organisation),
                )
                for m in case.members.values()
            ],
            preferences={p: msgspec.to_builtins(s) for p, s in sorted(case.preferences.items())},
            decisions=decisions,
            actions=[
                ActionView(a.id, a.decision, self.person(a.owner), a.due, a.completed_at)
                for a in case.actions.values()
            ],
            reviews=list(case.reviews),
            late_entries=[ref.hash for ref in case.late_entries()],
            concerns=list(case.concerns),
            version=case.version,
            recorded_at=case.recorded_at,
        )

    def _decision_json(self, case: Case, d: Decision) -> msgspec.Raw:
        # Raw stands in for the view in the documents: the encoder copies its bytes as they are.
        key = (case.key, d.id, case.version)
        raw = self._decisions.get(key)
        if raw is None:
            raw = self._decisions[key] = msgspec.Raw(encode(self.decision(case, d)))
        return raw

    def decision(self, case: Case, d: Decision) -> DecisionView:
        body = case.entries
        person, people = self.person, self.people
        # Each person's latest opinion on each proposal.
        latest = set({(o.person, o.proposal): o.hash for o in d.opinions}.values())
        opinions = []
        for o in d.opinions:
            said = body[o.hash].body
            opinions.append(
                OpinionView(
                    people.get(o.person) or person(o.person),
                    o.proposal,
                    o.stance,
                    o.hash,
                    o.recorded_at,
                    o.hash in latest,
                    said.reasons,
                    said.what_matters,
                )
            )
        return DecisionView(
            id=d.id,
            question=d.question,
            status=case.status(d),
            opened_by=self.person(d.opened_by),
            opened_at=d.opened_at,
            required=[self.person(p) for p in d.required],
            proposals=[
                ProposalView(
                    p.id,
                    p.hash,
                    p.title,
                    self.person(p.by),
                    p.made_at,
                    body[p.hash].body.description,
                    body[p.hash].body.benefits,
                    body[p.hash].body.risks,
                    p.do_nothing,
                    p.withdrawn_at,
                )
                for p in d.proposals.values()
            ],
            opinions=opinions,
            child_views=[
                ChildViewView(
                    v.hash,
                    v.view,
                    v.method,
                    self.person(v.by),
                    v.on_behalf,
                    v.recorded_at,
                    body[v.hash].body.support,
                    body[v.hash].body.sharing_wishes,
                    [
                        FeedbackView(
                            f,
                            self.person(body[f].by),
                            body[f].body.influence,
                            body[f].recorded_at,
                        )
                        for f in v.feedback
                    ],
                )
                for v in d.child_views
            ],
            not_obtained=[body[h].body.reason for h in d.not_obtained],
            agreements=[
                AgreementView(self.person(a.person), a.proposal_hash, a.hash, a.recorded_at)
                for a in d.agreements.values()
            ],
            still_to_agree=[
                self.person(p)
                for p in d.required
                if d.agreed_at is None
                and (p not in d.agreements or d.agreements[p].proposal_hash != _leading(d))
            ],
            missing=self.missing(case, d),
            dissents=list(d.dissents),
            context=d.context,
            revisits=d.revisits,
            superseded_by=d.superseded_by,
            deferred_until=d.deferred_until,
            agreed_hash=d.agreed_hash,
            agreed_at=d.agreed_at,
        )

    def missing(self, case: Case, d: Decision) -> list[str]:
        """What still stands between an open decision and agreement (R6, R7, R9)."""
        if d.agreed_at is not None:
            return []
        gaps = []
        if not d.child_heard:
            gaps.append("R6: the child's view, or why it could not be obtained")
        if not d.real_options:
            gaps.append("R7: at least two options")
        leading = _leading(d)
        if leading is None or case.treatment_consent(leading, case.recorded_at) is None:
            gaps.append("R9: treatment consent for the option being agreed")
        if any(p not in d.agreements for p in d.required):
            gaps.append("R9: agreement from everyone required")
        return gaps

    def register(self, case: Case) -> Register:
        return Register(case.key, self.consents(case), self.shares(case))

    def consents(self, case: Case, decision: str | None = None) -> list[ConsentView]:
        return [
            ConsentView(
                c.hash,
                self.person(c.by),
                c.given,
                c.scope,
                case.entries[c.hash].body.basis,
                c.recorded_at,
                c.decision,
                c.withdrawn_at,
                self.directory.organisation_name(
                    c.scope.organisation if isinstance(c.scope, b.SharingScope) else None
                ),
            )
            for c in case.consents.values()
            if decision is None
            or c.decision == decision
            or (isinstance(c.scope, b.TreatmentScope) and _proposal_of(case, decision, c.scope))
        ]

    def shares(self, case: Case) -> list[ShareView]:
        return [
            ShareView(
                s.hash,
                s.recipient,
                s.purpose,
                s.basis,
                self.person(s.by),
                s.recorded_at,
                s.safeguarding,
                s.consent,
                s.justification,
                self.directory.organisation_name(s.recipient),
            )
            for s in case.shares
        ]

    def trace(self, case: Case, d: Decision) -> Trace:
        return self._trace(case, d, self.decision(case, d))

    def trace_json(self, case: Case, d: Decision) -> bytes:
        """The decision's trace, encoded."""
        return encode(self._trace(case, d, cast(DecisionView, self._decision_json(case, d))))

    def _trace(self, case: Case, d: Decision, view: DecisionView) -> Trace:
        person, people, corrections = self.person, self.people, case.corrections
        steps = []
        for ref in case.entries.values():
            if ref.decision == d.id or _about(case, ref, d):
                corrected_by = corrections.get(ref.hash)
                steps.append(
                    TraceStep(
                        ref.seq,
                        ref.kind,
                        people.get(ref.by) or person(ref.by),
                        ref.recorded_at,
                        ref.at,
                        ref.hash,
                        ref.late,
                        person(ref.on_behalf_of) if ref.on_behalf_of else None,
                        list(corrected_by) if corrected_by else [],
                    )
                )
        return Trace(
            case.key,
            view,
            steps,
            self.consents(case, d.id),
            self.shares(case),
        )


def _leading(d: Decision) -> str | None:
    """The proposal most required participants have agreed on so far."""
    counts: dict[str, int] = {}
    for agreement in d.agreements.values():
        counts[agreement.proposal_hash] = counts.get(agreement.proposal_hash, 0) + 1
    return max(sorted(counts), key=lambda h: counts[h]) if counts else None


def _proposal_of(case: Case, decision: str, scope: b.TreatmentScope) -> bool:
    return case.decisions[decision].proposal_by_hash(scope.proposal_hash) is not None


def _about(case: Case, ref: EntryRef, d: Decision) -> bool:
    """Statements about the decision's entries: withdrawals and corrections."""
    target = case.entries.get(ref.about) if ref.about is not None else None
    return target is not None and target.decision == d.id
