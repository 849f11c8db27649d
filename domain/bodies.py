"""A typed, bounded body for every case statement kind."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from ledger.statement import (
    HASH_PATTERN,
    TEXT_PATTERN,
    Header,
    Statement,
    Text,
    Uuid,
    body_decoders,
)
from ledger.statement import parse_body as statement_body
from ledger.statement import read_body as header_body

LongText = Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=TEXT_PATTERN)]
OptionalText = Annotated[str, msgspec.Meta(max_length=4000)]
# A registered organisation's id (names can look alike, ids cannot). Typed as text, not as a
# UUID: entries recorded before organisations were registered name one by name, and still fold
# and verify; a new statement must give a registered id (`domain.rules`, R5).
OrganisationId = Text
Hash = Annotated[str, msgspec.Meta(pattern=HASH_PATTERN, description="entry hash")]
People = Annotated[list[Uuid], msgspec.Meta(min_length=1, max_length=50)]

Role = Literal[
    "child",
    "parent",
    "carer",
    "clinician",
    "social_worker",
    "advocate",
    "external_partner",
]
PROFESSIONAL_ROLES = frozenset({"clinician", "social_worker", "advocate"})
Stance = Literal["support", "concern", "oppose", "unsure"]
Method = Literal["spoken", "written", "pictures", "sign", "aac", "drawing", "behaviour", "other"]
ShareBasis = Literal["consent", "safeguarding", "legal_duty"]
# Sharing consent names what an organisation may see by statement family (the part before '.').
DataKind = Literal[
    "case",
    "participant",
    "preferences",
    "decision",
    "proposal",
    "opinion",
    "child_view",
    "feedback",
    "capacity",
    "consent",
    "agreement",
    "dissent",
    "action",
    "review",
    "information",
    "entry",
]


# gc=False: bodies hold plain values and never form cycles, and a case keeps one per entry;
# untracked, they cost the cyclic garbage collector nothing.
class Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """Base of every case statement body."""


class CaseOpened(Body):
    child: Uuid
    title: Text
    lead: Uuid


class ParticipantJoined(Body):
    person: Uuid
    role: Role
    parental_responsibility: bool = False
    organisation: OrganisationId | None = None  # external partners


class ParticipantLeft(Body):
    person: Uuid
    reason: Text


class PreferencesStated(Body):
    preferred_name: Text | None = None
    language: Text | None = None
    communication_needs: OptionalText = ""
    family_involvement: OptionalText = ""


class DecisionOpened(Body):
    decision: Uuid
    question: LongText
    required: People
    context: OptionalText = ""
    revisits: Uuid | None = None


class ProposalMade(Body):
    decision: Uuid
    proposal: Uuid
    title: Text
    description: OptionalText = ""
    benefits: OptionalText = ""
    risks: OptionalText = ""
    do_nothing: bool = False


class ProposalWithdrawn(Body):
    decision: Uuid
    proposal: Uuid
    reason: OptionalText = ""


class OpinionGiven(Body):
    decision: Uuid
    proposal: Uuid
    proposal_hash: Hash
    stance: Stance
    reasons: OptionalText = ""
    what_matters: OptionalText = ""


class ChildViewRecorded(Body):
    decision: Uuid
    view: LongText
    method: Method
    support: OptionalText = ""
    sharing_wishes: OptionalText = ""


class ChildViewNotObtained(Body):
    decision: Uuid
    reason: LongText


class FeedbackGiven(Body):
    decision: Uuid
    view: Hash
    influence: LongText


class CapacityAssessed(Body):
    decision: Uuid
    person: Uuid
    competent: bool
    reasoning: LongText


class TreatmentScope(
    msgspec.Struct, tag="treatment", tag_field="type", forbid_unknown_fields=True, gc=False
):
    proposal_hash: Hash


class SharingScope(
    msgspec.Struct, tag="sharing", tag_field="type", forbid_unknown_fields=True, gc=False
):
    organisation: OrganisationId
    purpose: Text
    data_kinds: Annotated[list[DataKind], msgspec.Meta(min_length=1, max_length=20)]
    until: date


Scope = TreatmentScope | SharingScope


class ConsentGiven(Body):
    scope: Scope
    basis: Text
    decision: Uuid | None = None


class ConsentRefused(Body):
    scope: Scope
    basis: Text
    decision: Uuid | None = None


class ConsentWithdrawn(Body):
    consent: Hash
    reason: OptionalText = ""


class AgreementGiven(Body):
    decision: Uuid
    proposal: Uuid
    proposal_hash: Hash
    rationale: OptionalText = ""
    child_view_considered: OptionalText = ""


class DissentRecorded(Body):
    decision: Uuid
    reasons: LongText
    proposal_hash: Hash | None = None


class DecisionDeferred(Body):
    decision: Uuid
    reason: LongText
    until: date


class ActionAssigned(Body):
    decision: Uuid
    action: Uuid
    owner: Uuid
    due: date
    description: OptionalText = ""


class ActionCompleted(Body):
    decision: Uuid
    action: Uuid
    note: OptionalText = ""


class ReviewScheduled(Body):
    decision: Uuid
    due: date


class InformationShared(Body):
    recipient: Text
    purpose: Text
    what: LongText
    basis: ShareBasis
    consent: Hash | None = None
    justification: OptionalText = ""


class ConcernRaised(Body):
    concern: LongText
    referred_to: Text


class EntryCorrected(Body):
    entry: Hash
    correction: LongText
    reason: LongText


BODIES: dict[str, type[Body]] = {
    "case.opened": CaseOpened,
    "participant.joined": ParticipantJoined,
    "participant.left": ParticipantLeft,
    "preferences.stated": PreferencesStated,
    "decision.opened": DecisionOpened,
    "proposal.made": ProposalMade,
    "proposal.withdrawn": ProposalWithdrawn,
    "opinion.given": OpinionGiven,
    "child_view.recorded": ChildViewRecorded,
    "child_view.not_obtained": ChildViewNotObtained,
    "feedback.given": FeedbackGiven,
    "capacity.assessed": CapacityAssessed,
    "consent.given": ConsentGiven,
    "consent.refused": ConsentRefused,
    "consent.withdrawn": ConsentWithdrawn,
    "agreement.given": AgreementGiven,
    "dissent.recorded": DissentRecorded,
    "decision.deferred": DecisionDeferred,
    "action.assigned": ActionAssigned,
    "action.completed": ActionCompleted,
    "review.scheduled": ReviewScheduled,
    "information.shared": InformationShared,
    "safeguarding.concern_raised": ConcernRaised,
    "entry.corrected": EntryCorrected,
}


def parse_body(statement: Statement) -> Any:
    """The statement's body as the Struct of its kind; unknown kinds and fields are malformed."""
    return statement_body(statement, BODIES, "case")


def read_body(header: Header) -> Any:
    """A stored statement's raw body as (a subclass of) the Struct of its kind, for folding:
    its structure and types are checked, its patterns and lengths not again."""
    return header_body(header, _DECODERS, "case")


_DECODERS = body_decoders(BODIES)
