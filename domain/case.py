"""A case's state, folded from its entries: members, decisions, consents, sharing and flags.

Decision state is derived here, never asserted by a client: a decision becomes agreed when the
agreement that completes R9 is applied, is on hold while no treatment consent for the agreed
proposal is active (R10), and is superseded when a decision revisiting it is agreed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from domain import bodies as b
from domain.parts import (
    Action,
    Agreement,
    ChildView,
    Consent,
    Decision,
    EntryRef,
    Member,
    Opinion,
    Proposal,
    Share,
)
from ledger.clock import format_recorded, normalise
from ledger.entry import Entry
from ledger.errors import Malformed
from ledger.stream import Stream

LATE_AFTER = timedelta(hours=24)
FEEDBACK_DUE_AFTER = timedelta(days=14)


class Case(Stream):
    """One child's decision record."""

    def __init__(self, stream_id: Any) -> None:
        super().__init__(stream_id)
        self.child: str | None = None
        self.lead: str | None = None
        self.title = ""
        self.members: dict[str, Member] = {}
        self.preferences: dict[str, b.PreferencesStated] = {}
        self.decisions: dict[str, Decision] = {}
        self.consents: dict[str, Consent] = {}
        self.entries: dict[str, EntryRef] = {}
        self.corrections: dict[str, list[str]] = {}
        self.shares: list[Share] = []
        self.concerns: list[str] = []
        self.actions: dict[str, Action] = {}
        self.reviews: list[tuple[str, date]] = []

    # -- questions the rules and projections ask ---------------------------------------------

    def member(self, person: str) -> Member | None:
        """The person's active membership, if any."""
        member = self.members.get(person)
        return member if member is not None and member.active else None

    def status(self, decision: Decision) -> str:
        """open, deferred, agreed, on_hold or superseded: derived, never stored."""
        if decision.superseded_by is not None:
            return "superseded"
        if decision.agreed_hash is not None:
            in_force = self.treatment_consent(decision.agreed_hash, self.recorded_at)
            return "agreed" if in_force is not None else "on_hold"
        return "deferred" if decision.deferred_until is not None else "open"

    def treatment_consent(self, proposal_hash: str, recorded_at: str) -> Consent | None:
        """An active treatment consent for that proposal, if any."""
        for consent in self.consents.values():
            if (
                isinstance(consent.scope, b.TreatmentScope)
                and consent.scope.proposal_hash == proposal_hash
                and consent.active_at(recorded_at)
            ):
                return consent
        return None

    def sharing_consent(self, organisation: str, recorded_at: str) -> Consent | None:
        """An active sharing consent naming that organisation, if any."""
        for consent in self.consents.values():
            if (
                isinstance(consent.scope, b.SharingScope)
                and consent.scope.organisation == organisation
                and consent.active_at(recorded_at)
            ):
                return consent
        return None

    def agreement_would_complete(
        self, decision: Decision, agreements: dict[str, Agreement], recorded_at: str
    ) -> str | None:
        """The hash the decision would be agreed on with these agreements (R6, R7, R9)."""
        agreed = decision.unanimous_on(agreements)
        if agreed is None or not (decision.child_heard and decision.real_options):
            return None
        return agreed if self.treatment_consent(agreed, recorded_at) else None

    def late_entries(self) -> list[EntryRef]:
        """R13: entries recorded more than 24 hours after the time their author gave."""
        return [ref for ref in self.entries.values() if ref.late]

    def overdue_feedback(self, now: str) -> list[tuple[Decision, ChildView]]:
        """R14: the child's views that got no feedback within 14 days."""
        cutoff = _shift(now, -FEEDBACK_DUE_AFTER)
        return [
            (decision, view)
            for decision in self.decisions.values()
            for view in decision.child_views
            if not view.feedback and view.recorded_at < cutoff
        ]

    def safeguarding_shares(self) -> list[Share]:
        """R12: shares made without consent for a child's safety, flagged for reviewers."""
        return [share for share in self.shares if share.safeguarding]

    # -- folding entries ---------------------------------------------------------------------

    def validate(self, entry: Entry) -> None:
        super().validate(entry)
        b.parse_body(entry.statement)

    def apply(self, entry: Entry) -> None:
        super().apply(entry)
        header = entry.header
        body = b.read_body(header)
        at = header.at
        if len(at) != 24:
            at = normalise(at)
        recorded_at = entry.recorded_at
        self.entries[entry.hash] = EntryRef(
            entry.hash,
            entry.seq,
            header.kind,
            header.by,
            header.on_behalf_of,
            at,
            recorded_at,
            # The same day is less than 24 hours apart: no date arithmetic for most entries.
            at[:10] != recorded_at[:10] and _late(at, recorded_at),
            getattr(body, "decision", None),
            body,
        )
        getattr(self, _HANDLERS[header.kind])(body, header.by, entry)

    def _on_case_opened(self, body: b.CaseOpened, by: str, entry: Entry) -> None:
        self.child, self.lead, self.title = body.child, body.lead, body.title
        self.members[body.lead] = Member(body.lead, "clinician", False, None, entry.recorded_at)
        self.members[body.child] = Member(body.child, "child", False, None, entry.recorded_at)

    def _on_participant_joined(self, body: b.ParticipantJoined, by: str, entry: Entry) -> None:
        self.members[body.person] = Member(
            body.person,
            body.role,
            body.parental_responsibility,
            body.organisation,
            entry.recorded_at,
        )

    def _on_participant_left(self, body: b.ParticipantLeft, by: str, entry: Entry) -> None:
        self.members[body.person].left_at = entry.recorded_at

    def _on_preferences_stated(self, body: b.PreferencesStated, by: str, entry: Entry) -> None:
        self.preferences[entry.header.on_behalf_of or by] = body

    def _on_decision_opened(self, body: b.DecisionOpened, by: str, entry: Entry) -> None:
        self.decisions[body.decision] = Decision(
            body.decision,
            body.question,
            list(body.required),
            by,
            entry.recorded_at,
            body.revisits,
            body.context,
        )

    def _on_proposal_made(self, body: b.ProposalMade, by: str, entry: Entry) -> None:
        self.decisions[body.decision].proposals[body.proposal] = Proposal(
            body.proposal, entry.hash, body.title, body.do_nothing, by, entry.recorded_at
        )

    def _on_proposal_withdrawn(self, body: b.ProposalWithdrawn, by: str, entry: Entry) -> None:
        self.decisions[body.decision].proposals[body.proposal].withdrawn_at = entry.recorded_at

    def _on_opinion_given(self, body: b.OpinionGiven, by: str, entry: Entry) -> None:
        self.decisions[body.decision].opinions.append(
            Opinion(
                by, body.proposal, body.proposal_hash, body.stance, entry.hash, entry.recorded_at
            )
        )

    def _on_child_view_recorded(self, body: b.ChildViewRecorded, by: str, entry: Entry) -> None:
        on_behalf = entry.header.on_behalf_of is not None
        self.decisions[body.decision].child_views.append(
            ChildView(entry.hash, by, on_behalf, body.view, body.method, entry.recorded_at)
        )

    def _on_child_view_not_obtained(
        self, body: b.ChildViewNotObtained, by: str, entry: Entry
    ) -> None:
        self.decisions[body.decision].not_obtained.append(entry.hash)

    def _on_feedback_given(self, body: b.FeedbackGiven, by: str, entry: Entry) -> None:
        for view in self.decisions[body.decision].child_views:
            if view.hash == body.view:
                view.feedback.append(entry.hash)

    def _on_capacity_assessed(self, body: b.CapacityAssessed, by: str, entry: Entry) -> None:
        self.decisions[body.decision].capacity[body.person] = body.competent

    def _on_consent_given(self, body: b.ConsentGiven, by: str, entry: Entry) -> None:
        self.consents[entry.hash] = Consent(
            entry.hash, by, True, body.scope, body.decision, entry.recorded_at
        )

    def _on_consent_refused(self, body: b.ConsentRefused, by: str, entry: Entry) -> None:
        self.consents[entry.hash] = Consent(
            entry.hash, by, False, body.scope, body.decision, entry.recorded_at
        )

    def _on_consent_withdrawn(self, body: b.ConsentWithdrawn, by: str, entry: Entry) -> None:
        self.consents[body.consent].withdrawn_at = entry.recorded_at
        self.entries[entry.hash].about = body.consent

    def _on_agreement_given(self, body: b.AgreementGiven, by: str, entry: Entry) -> None:
        decision = self.decisions[body.decision]
        decision.agreements[by] = Agreement(by, body.proposal_hash, entry.hash, entry.recorded_at)
        agreed = self.agreement_would_complete(decision, decision.agreements, entry.recorded_at)
        if agreed is not None:
            decision.agreed_hash, decision.agreed_at = agreed, entry.recorded_at
            if decision.revisits is not None:
                self.decisions[decision.revisits].superseded_by = decision.id

    def _on_dissent_recorded(self, body: b.DissentRecorded, by: str, entry: Entry) -> None:
        self.decisions[body.decision].dissents.append(entry.hash)

    def _on_decision_deferred(self, body: b.DecisionDeferred, by: str, entry: Entry) -> None:
        self.decisions[body.decision].deferred_until = body.until

    def _on_action_assigned(self, body: b.ActionAssigned, by: str, entry: Entry) -> None:
        self.actions[body.action] = Action(body.action, body.decision, body.owner, body.due, by)

    def _on_action_completed(self, body: b.ActionCompleted, by: str, entry: Entry) -> None:
        self.actions[body.action].completed_at = entry.recorded_at

    def _on_review_scheduled(self, body: b.ReviewScheduled, by: str, entry: Entry) -> None:
        self.reviews.append((body.decision, body.due))

    def _on_information_shared(self, body: b.InformationShared, by: str, entry: Entry) -> None:
        self.entries[entry.hash].about = body.consent
        self.shares.append(
            Share(
                entry.hash,
                body.recipient,
                body.purpose,
                body.basis,
                body.consent,
                body.justification,
                by,
                entry.recorded_at,
            )
        )

    def _on_safeguarding_concern_raised(self, body: b.ConcernRaised, by: str, entry: Entry) -> None:
        self.concerns.append(entry.hash)

    def _on_entry_corrected(self, body: b.EntryCorrected, by: str, entry: Entry) -> None:
        self.corrections.setdefault(body.entry, []).append(entry.hash)
        self.entries[entry.hash].about = body.entry


# Each kind's handler; read_body has already refused kinds that are not in BODIES.
_HANDLERS = {kind: "_on_" + kind.replace(".", "_") for kind in b.BODIES}


def _late(at: str, recorded_at: str) -> bool:
    """R13: recorded more than 24 hours after `at` (both in recorded_at form)."""
    try:
        return recorded_at > _shift(at, LATE_AFTER)
    except ValueError:
        raise Malformed(f"timestamp {at!r} is not a real date and time") from None


def _shift(stamp: str, delta: timedelta) -> str:
    """A recorded_at-form timestamp moved by `delta`, still comparable as a string."""
    return format_recorded(datetime.fromisoformat(stamp) + delta)
