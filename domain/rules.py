"""Rules R1 and R3-R14, checked before a case statement is appended (R2 is the
ledger's). Each rejection names its rule and says, in a sentence a person understands, why."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from domain import bodies as b
from domain.case import Case
from domain.errors import NotAMember, RoleNotPermitted, RuleViolated, StaleReference
from domain.named import organisations
from domain.parts import Agreement, Decision, Member
from ledger.clock import normalise
from ledger.directory import Directory
from ledger.directory_records import Person
from ledger.statement import UUID_PATTERN, Statement

CLOCK_SKEW = timedelta(minutes=5)
ADULT_FOR_CONSENT = 16
ON_BEHALF_KINDS = frozenset({"child_view.recorded", "preferences.stated"})
OPEN = frozenset({"open", "deferred"})
ROLE_NAMES = {
    "child": "the child",
    "parent": "a parent",
    "carer": "a carer",
    "clinician": "a clinician",
    "social_worker": "a social worker",
    "advocate": "an advocate",
    "external_partner": "an external partner",
}


UNREGISTERED = (
    "That organisation is not registered in the directory; an organisation is registered "
    "first, and then named by the id it was registered under."
)
_UUID = re.compile(UUID_PATTERN)


def admit(
    case: Case, statement: Statement, directory: Directory, recorded_at: str, new: bool = False
) -> None:
    """Raise a `RuleViolated` (or subclass) unless the statement may be appended to the case.

    `new`: the statement is being submitted, not replayed, and is also held to what stored
    entries are not: it names every organisation by a registered id, never by a name (which
    only entries recorded before organisations were registered hold).
    """
    body = b.parse_body(statement)
    if new and any(not _UUID.match(o) for o in organisations(body)):
        raise RuleViolated("R5", UNREGISTERED)
    check = _Check(case, statement, directory, recorded_at)
    check.time()
    if statement.on_behalf_of is not None and statement.kind not in ON_BEHALF_KINDS:
        raise RoleNotPermitted(
            "R4", "Only a child's view or preferences may be recorded on someone's behalf."
        )
    if statement.kind == "case.opened":
        check.opening(body)
        return
    author = check.membership()
    check.on_behalf(author)
    handler: Callable[[Any, Member], None] = getattr(check, statement.kind.replace(".", "_"))
    handler(body, author)


class _Check:
    def __init__(
        self, case: Case, statement: Statement, directory: Directory, recorded_at: str
    ) -> None:
        self.case = case
        self.statement = statement
        self.directory = directory
        self.recorded_at = recorded_at

    # -- naming people in messages -------------------------------------------------------------

    def name(self, person: str | None) -> str:
        if person is None:
            return "someone"
        stated = self.case.preferences.get(person)
        if stated is not None and stated.preferred_name:
            return stated.preferred_name
        known = self.directory.persons.get(person)
        return known.name if known is not None else "an unknown person"

    def outside(self, person: Person) -> str | None:
        """What keeps a person outside every case, if anything: appointed reviewers read cases,
        appointed administrators run the directory and services subscribe; none of them ever
        writes in a case or joins one (R1)."""
        if person.kind == "service":
            return "reads cases as a service"
        if person.reviewer_at(self.recorded_at):
            return "reads cases as a reviewer"
        if person.appointed_at("administrator", self.recorded_at):
            return "runs the directory as an administrator"
        return None

    @property
    def child(self) -> str:
        return self.name(self.case.child)

    # -- R13, R1, R4 ---------------------------------------------------------------------------

    def time(self) -> None:
        at = datetime.fromisoformat(normalise(self.statement.at))
        if at > datetime.fromisoformat(self.recorded_at) + CLOCK_SKEW:
            raise RuleViolated(
                "R13",
                f"This statement is dated {self.statement.at}, more than five minutes ahead of "
                f"the ledger's clock ({self.recorded_at}); check the device's clock.",
            )

    def opening(self, body: b.CaseOpened) -> None:
        by = self.statement.by
        if self.case.version:
            raise RuleViolated("R5", "This case is already open; a case is opened only once.")
        author = self.directory.persons.get(by)
        outside = None if author is None else self.outside(author)
        if author is not None and outside is not None:
            raise NotAMember(f"{author.name} {outside}; they open none.")
        if author is None or author.kind != "professional":
            raise RoleNotPermitted("R3", "Only a clinician can open a case.")
        if body.lead != by:
            raise RoleNotPermitted(
                "R3", "The clinician who opens a case is its lead; name yourself as lead."
            )
        child = self.directory.persons.get(body.child)
        if child is None or child.kind != "child":
            raise RuleViolated(
                "R5", "The case's child must be registered in the directory as a child."
            )

    def membership(self) -> Member:
        by = self.statement.by
        if not self.case.version:
            raise NotAMember("This case has not been opened; its first statement is case.opened.")
        person = self.directory.persons.get(by)
        outside = None if person is None else self.outside(person)
        if outside is not None:
            raise NotAMember(f"{self.name(by)} {outside} and cannot write to cases.")
        member = self.case.member(by)
        if member is None:
            raise NotAMember(f"{self.name(by)} is not a member of this case.")
        return member

    def on_behalf(self, author: Member) -> None:
        for_ = self.statement.on_behalf_of
        if for_ is None:
            return
        if for_ != self.case.child:
            raise RoleNotPermitted("R4", f"Statements can only be made on behalf of {self.child}.")
        if author.role == "child" or author.role == "external_partner":
            raise RoleNotPermitted(
                "R4",
                f"{self.child}'s view can be recorded on their behalf by a parent, carer, "
                "advocate or professional in the case.",
            )

    # -- role helpers ----------------------------------------------------------------------------

    def require_role(self, rule: str, author: Member, roles: frozenset[str], what: str) -> None:
        if author.role not in roles:
            role = ROLE_NAMES[author.role]
            raise RoleNotPermitted(rule, f"{what}; {self.name(author.person)} is {role}.")

    def require_lead(self, what: str) -> None:
        if self.statement.by != self.case.lead:
            raise RoleNotPermitted(
                "R3", f"Only the case lead, {self.name(self.case.lead)}, {what}."
            )

    def require_professional(self, author: Member, what: str) -> None:
        self.require_role("R3", author, b.PROFESSIONAL_ROLES, f"Only a professional {what}")

    def require_not_partner(self, author: Member, what: str) -> None:
        if author.role == "external_partner":
            raise RoleNotPermitted("R3", f"An external partner cannot {what}.")

    def decision(
        self, decision_id: str, *, open_only: bool = False, superseded: bool = False
    ) -> Decision:
        """The decision, which must be open (`open_only`) or, unless `superseded`, current."""
        decision = self.case.decisions.get(decision_id)
        if decision is None:
            raise RuleViolated("R5", "That decision does not exist in this case.")
        status = self.case.status(decision)
        if (status == "superseded" and not superseded) or (open_only and status not in OPEN):
            raise RuleViolated(
                "R5", f"The decision \u201c{decision.question}\u201d is {status.replace('_', ' ')}."
            )
        return decision

    def live_proposal(self, decision: Decision, proposal: str | None, proposal_hash: str) -> None:
        found = decision.proposal_by_hash(proposal_hash)
        if found is None:
            raise RuleViolated("R5", "That proposal does not exist for this decision.")
        if proposal is not None and found.id != proposal:
            raise StaleReference("The proposal id and proposal_hash name different proposals.")
        if found.withdrawn_at is not None:
            raise StaleReference(f"The proposal \u201c{found.title}\u201d has been withdrawn.")

    def referenced_entry(self, entry_hash: str, kinds: tuple[str, ...], what: str) -> Any:
        ref = self.case.entries.get(entry_hash)
        if ref is None or ref.kind not in kinds:
            raise RuleViolated("R5", f"That {what} is not recorded in this case.")
        return ref

    # -- one method per kind: (body, author) ----------------------------------------------------

    def participant_joined(self, body: b.ParticipantJoined, author: Member) -> None:
        self.require_lead("adds members")
        person = self.directory.persons.get(body.person)
        if person is None:
            raise RuleViolated("R5", "That person is not registered in the directory.")
        if self.case.member(body.person) is not None:
            raise RuleViolated("R5", f"{self.name(body.person)} is already a member of this case.")
        outside = self.outside(person)
        if outside is not None:
            raise NotAMember(f"{person.name} {outside}, not as a member of a case.")
        expected = {"child": "child", "parent": "adult", "carer": "adult"}.get(body.role)
        if body.role == "child" or (expected and person.kind != expected):
            raise RoleNotPermitted("R3", f"{person.name} cannot join as {body.role}.")
        if body.role == "external_partner" and person.kind not in ("adult", "professional"):
            raise RoleNotPermitted("R3", f"{person.name} cannot join as an external partner.")
        if body.role in b.PROFESSIONAL_ROLES and person.kind != "professional":
            raise RoleNotPermitted("R3", f"{person.name} is not registered as a professional.")
        if body.parental_responsibility and body.role not in ("parent", "carer"):
            raise RoleNotPermitted("R8", "Only a parent or carer can hold parental responsibility.")
        if body.role == "external_partner" and not body.organisation:
            raise RuleViolated("R12", "An external partner joins on behalf of an organisation.")
        if body.organisation is not None:
            self.registered_organisation(body.organisation)

    def participant_left(self, body: b.ParticipantLeft, author: Member) -> None:
        self.require_lead("records that members leave")
        if self.case.member(body.person) is None:
            raise RuleViolated("R5", f"{self.name(body.person)} is not a member of this case.")
        if body.person in (self.case.child, self.case.lead):
            raise RoleNotPermitted("R1", "The child and the case lead stay members of their case.")

    def preferences_stated(self, body: b.PreferencesStated, author: Member) -> None:
        pass  # any member for themself; R4 already checked statements on the child's behalf

    def decision_opened(self, body: b.DecisionOpened, author: Member) -> None:
        self.require_not_partner(author, "open a decision")
        if body.decision in self.case.decisions:
            raise RuleViolated("R5", "A decision with that id already exists in this case.")
        for person in body.required:
            member = self.case.member(person)
            if member is None or member.role == "external_partner":
                raise RuleViolated(
                    "R5", f"{self.name(person)} must be a member of the case to be asked to agree."
                )
        if body.revisits is not None:
            earlier = self.decision(body.revisits)
            if self.case.status(earlier) not in ("agreed", "on_hold"):
                raise RuleViolated("R5", "Only an agreed decision can be revisited.")

    def proposal_made(self, body: b.ProposalMade, author: Member) -> None:
        decision = self.decision(body.decision, open_only=True)
        if any(body.proposal in d.proposals for d in self.case.decisions.values()):
            raise RuleViolated("R5", "A proposal with that id already exists in this case.")
        if body.do_nothing and any(p.do_nothing for p in decision.live_proposals()):
            raise RuleViolated("R7", "Doing nothing is already one of the options.")

    def proposal_withdrawn(self, body: b.ProposalWithdrawn, author: Member) -> None:
        decision = self.decision(body.decision, open_only=True)
        proposal = decision.proposals.get(body.proposal)
        if proposal is None:
            raise RuleViolated("R5", "That proposal does not exist for this decision.")
        if proposal.by != author.person:
            raise RoleNotPermitted(
                "R3", f"Only {self.name(proposal.by)}, who made this proposal, can withdraw it."
            )
        if proposal.withdrawn_at is not None:
            raise StaleReference(f"The proposal \u201c{proposal.title}\u201d is already withdrawn.")

    def opinion_given(self, body: b.OpinionGiven, author: Member) -> None:
        decision = self.decision(body.decision, open_only=True)
        self.live_proposal(decision, body.proposal, body.proposal_hash)

    def child_view_recorded(self, body: b.ChildViewRecorded, author: Member) -> None:
        self.decision(body.decision)
        if self.statement.on_behalf_of is None and author.role != "child":
            raise RoleNotPermitted(
                "R4",
                f"A view recorded by someone other than {self.child} must say it is on "
                f"{self.child}'s behalf.",
            )

    def child_view_not_obtained(self, body: b.ChildViewNotObtained, author: Member) -> None:
        self.require_professional(author, "can record why a child's view could not be obtained")
        self.decision(body.decision, open_only=True)

    def feedback_given(self, body: b.FeedbackGiven, author: Member) -> None:
        self.require_professional(author, f"gives {self.child} feedback")
        # A view is owed its answer (R14) even after the decision was revisited.
        decision = self.decision(body.decision, superseded=True)
        if not any(view.hash == body.view for view in decision.child_views):
            raise RuleViolated(
                "R5", f"That view of {self.child}'s is not recorded for this decision."
            )

    def capacity_assessed(self, body: b.CapacityAssessed, author: Member) -> None:
        self.require_role(
            "R3", author, frozenset({"clinician"}), "Only a clinician assesses capacity"
        )
        self.decision(body.decision, open_only=True)
        if self.case.member(body.person) is None:
            raise RuleViolated("R5", f"{self.name(body.person)} is not a member of this case.")

    def consent_given(self, body: b.ConsentGiven | b.ConsentRefused, author: Member) -> None:
        if isinstance(body.scope, b.TreatmentScope):
            if body.decision is None:
                raise RuleViolated("R5", "Consent to treatment names the decision it is for.")
            decision = self.decision(body.decision)
            self.live_proposal(decision, None, body.scope.proposal_hash)
        else:
            if body.decision is not None:
                self.decision(body.decision)
            self.registered_organisation(body.scope.organisation)
            if body.scope.until.isoformat() < self.recorded_at[:10]:
                raise RuleViolated("R12", "This sharing consent would already have ended.")
        # A sharing consent that names a decision covers only that decision's entries; one that
        # names none covers the whole case, which a child's capacity for one decision does not.
        self.entitled(body.decision, author)

    def registered_organisation(self, organisation: str) -> None:
        """R5: organisations are named by the id the directory registered them under.

        An entry recorded before organisations were registered names one by name, and replays
        as it was accepted; a new statement may not (`name_organisations_by_id`).
        """
        if organisation not in self.directory.organisations and _UUID.match(organisation):
            raise RuleViolated("R5", UNREGISTERED)

    def organisation(self, organisation: str) -> str:
        """An organisation's registered name, for messages."""
        return self.directory.organisation_name(organisation) or "an unregistered organisation"

    consent_refused = consent_given

    def entitled(self, decision_id: str | None, author: Member) -> None:
        """R8: the competent child (or one aged 16 or over), or a parent or carer with PR."""
        if author.role in ("parent", "carer") and author.parental_responsibility:
            return
        if author.role == "child":
            decision = self.case.decisions.get(decision_id or "")
            if decision is not None and decision.capacity.get(author.person):
                return
            if self.age(author.person) >= ADULT_FOR_CONSENT:
                return
            if decision_id is None:
                raise RuleViolated(
                    "R8",
                    "A consent that names no decision covers the whole case, so it can only "
                    f"come from {self.child} once aged 16 or over or from a parent or carer with "
                    "parental responsibility; being assessed competent for one decision covers "
                    "only consents that name that decision.",
                )
        raise RuleViolated(
            "R8",
            f"Consent for {self.child} can only come from {self.child} (once assessed competent "
            "for this decision, or aged 16 or over) or from a parent or carer with parental "
            f"responsibility; {self.name(author.person)} is neither.",
        )

    def age(self, person: str) -> int:
        known = self.directory.persons.get(person)
        if known is None or known.born is None:
            return 0
        born, today = date.fromisoformat(known.born), date.fromisoformat(self.recorded_at[:10])
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))

    def consent_withdrawn(self, body: b.ConsentWithdrawn, author: Member) -> None:
        self.referenced_entry(body.consent, ("consent.given",), "consent")
        consent = self.case.consents[body.consent]
        if consent.by != author.person:
            # Whoever gave it, or anyone else entitled to give it (R8): the worked case has one
            # parent withdrawing the sharing consent the other gave.
            try:
                self.entitled(consent.decision, author)
            except RuleViolated:
                raise RoleNotPermitted(
                    "R10",
                    "A consent can be withdrawn by the person who gave it, or by someone else "
                    f"entitled to consent for {self.child}.",
                ) from None
        if consent.withdrawn_at is not None:
            raise RuleViolated("R10", "That consent has already been withdrawn.")

    def agreement_given(self, body: b.AgreementGiven, author: Member) -> None:
        decision = self.decision(body.decision, open_only=True)
        if author.person not in decision.required:
            raise RoleNotPermitted(
                "R3", f"{self.name(author.person)} is not one of the people who must agree."
            )
        self.live_proposal(decision, body.proposal, body.proposal_hash)
        agreements = dict(decision.agreements)
        agreements[author.person] = Agreement(
            author.person, body.proposal_hash, "", self.recorded_at
        )
        if decision.unanimous_on(agreements) is None:
            return  # not the last agreement: nothing else is decided yet
        if not decision.child_heard:
            raise RuleViolated(
                "R6",
                f"{self.child}'s view has not been recorded for this decision, and no reason was "
                "given why it could not be.",
            )
        if not decision.real_options:
            raise RuleViolated(
                "R7",
                "Only one option is on the table; a decision needs at least two (doing nothing "
                "counts as one).",
            )
        if self.case.treatment_consent(body.proposal_hash, self.recorded_at) is None:
            raise RuleViolated(
                "R9",
                "Everyone has agreed, but no one entitled has consented to this proposal yet.",
            )

    def dissent_recorded(self, body: b.DissentRecorded, author: Member) -> None:
        decision = self.decision(body.decision)
        if body.proposal_hash is not None and decision.proposal_by_hash(body.proposal_hash) is None:
            raise RuleViolated("R5", "That proposal does not exist for this decision.")

    def decision_deferred(self, body: b.DecisionDeferred, author: Member) -> None:
        self.require_lead("defers decisions")
        self.decision(body.decision, open_only=True)

    def action_assigned(self, body: b.ActionAssigned, author: Member) -> None:
        self.require_professional(author, "assigns actions")
        self.decision(body.decision)
        if body.action in self.case.actions:
            raise RuleViolated("R5", "An action with that id already exists in this case.")
        if self.case.member(body.owner) is None:
            raise RuleViolated("R5", f"{self.name(body.owner)} is not a member of this case.")

    def action_completed(self, body: b.ActionCompleted, author: Member) -> None:
        action = self.case.actions.get(body.action)
        if action is None or action.decision != body.decision:
            raise RuleViolated("R5", "That action does not exist for this decision.")
        if author.person != action.owner:
            self.require_professional(author, "other than its owner completes an action")
        if action.completed_at is not None:
            raise RuleViolated("R5", "That action is already complete.")

    def review_scheduled(self, body: b.ReviewScheduled, author: Member) -> None:
        self.require_professional(author, "schedules reviews")
        self.decision(body.decision)

    def information_shared(self, body: b.InformationShared, author: Member) -> None:
        self.require_professional(author, "records information sharing")
        if body.basis == "consent":
            consent = self.case.consents.get(body.consent or "")
            if not (
                consent is not None
                and isinstance(consent.scope, b.SharingScope)
                and consent.scope.organisation == body.recipient
                and consent.active_at(self.recorded_at)
            ):
                raise RuleViolated(
                    "R12",
                    f"There is no active consent to share {self.child}'s information with "
                    f"{self.organisation(body.recipient)}; a share on the basis of consent names "
                    "the organisation of an active sharing consent, by its id.",
                )
        elif not body.justification.strip():
            raise RuleViolated(
                "R12",
                f"Sharing without consent ({body.basis.replace('_', ' ')}) needs a justification.",
            )

    def safeguarding_concern_raised(self, body: b.ConcernRaised, author: Member) -> None:
        self.require_professional(author, "raises a safeguarding concern")

    def entry_corrected(self, body: b.EntryCorrected, author: Member) -> None:
        target = self.referenced_entry(body.entry, tuple(b.BODIES), "entry")
        if author.person not in (target.by, self.case.lead):
            if target.by == self.case.lead:
                who = f"{self.name(target.by)}, who wrote this entry and leads the case,"
            else:
                who = (
                    f"{self.name(target.by)}, who wrote this entry, or the case lead, "
                    f"{self.name(self.case.lead)},"
                )
            raise RoleNotPermitted("R11", f"Only {who} can correct it.")
