"""Rules R1 and R3-R14, through the signed write path, on SQLite and PostgreSQL.

Every rule lets some statements in and turns others away. A statement turned away carries the
right code and rule id, says what is wrong in a sentence that names people (never ids), and
leaves the ledger exactly as it was. Case state is read back from the store through a second,
cold ledger instance.

The case: Oluwaseun Bello ("Seun", 9) with Dr Okafor as lead, a physiotherapist, parents with and
without parental responsibility, a carer, an advocate, a social worker and the school; one open
decision with three proposals (doing nothing is one of them).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

import pytest

from domain.bodies import DataKind
from domain.case import Case
from domain.errors import RuleViolated
from domain.record import DecisionRecord
from ledger.author import Author
from ledger.clock import format_recorded
from ledger.errors import Malformed
from ledger.ledger import Accepted
from ledger.receipt import Receipt
from tests.conftest import World, fingerprint

CHILD = "Oluwaseun Bello"
PREFERRED = "Seun"
LEAD = "Dr Ngozi Okafor"
SCHOOL = "Hillside Primary School"
SURGERY = "Riverside Surgery"
QUESTION = "How should Seun's physiotherapy continue for the next six months?"
TITLES = {
    "clinic": "Twice-weekly clinic sessions",
    "home": "One clinic session plus a daily home programme",
    "as_now": "Carry on as now",
}

UUID_IN_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HASH_IN_TEXT = re.compile(r"\b[0-9a-f]{64}\b")
RULE_ID_IN_TEXT = re.compile(r"\bR\d+\b")


@dataclass(frozen=True)
class Cast:
    """Someone in the scene: how the directory registers them and how they join the case."""

    handle: str
    name: str
    kind: str
    role: str | None  # None: not joined (the child and lead join by case.opened; outsiders never)
    profession: str | None = None
    organisation: str | None = None
    parental_responsibility: bool = False


CAST = (
    Cast("child", CHILD, "child", None),
    Cast("lead", LEAD, "professional", None, profession="paediatrician"),
    Cast("sam", "Sam Reyes", "professional", "clinician", profession="physiotherapist"),
    Cast("grace", "Grace Bello", "adult", "parent", parental_responsibility=True),
    Cast("daniel", "Daniel Bello", "adult", "parent", parental_responsibility=True),
    Cast("peter", "Peter Bello", "adult", "parent", parental_responsibility=False),
    Cast("rose", "Rose Bello", "adult", "carer", parental_responsibility=True),
    Cast("priya", "Priya Shah", "professional", "advocate", profession="play therapist"),
    Cast("joan", "Joan Mensah", "professional", "social_worker", profession="social worker"),
    Cast("school", "Ruth Lewis", "professional", "external_partner", "SENCO", SCHOOL),
    Cast("olu", "Olu Adeyemi", "adult", None),
)
NAMES = {person.handle: person.name for person in CAST}


@dataclass(frozen=True)
class Attempt:
    """A statement someone in the scene tries to make (people by handle)."""

    who: str
    kind: str
    body: dict[str, Any]
    for_: str | None = None
    stream: str | None = None  # default: the scene's case
    at: str | None = None


@dataclass(frozen=True)
class Option:
    """A proposal made in the scene."""

    decision: str
    id: str
    hash: str

    def ref(self) -> dict[str, str]:
        return {"decision": self.decision, "proposal": self.id, "proposal_hash": self.hash}


@dataclass
class Scene:
    """A case on a decision record, with helpers to say things in it and read it back."""

    world: World
    case: str
    authors: dict[str, Author]
    decision: str = ""
    options: dict[str, Option] = field(default_factory=dict)

    def id(self, handle: str) -> str:
        return self.authors[handle].person

    def add(self, handle: str, name: str, kind: str, **details: str | None) -> str:
        """Register someone new (not a member); returns their person id."""
        self.authors[handle] = self.world.person(name, kind, **details)
        return self.authors[handle].person

    # -- submitting ------------------------------------------------------------------------

    def submit(self, attempt: Attempt) -> Accepted:
        author = self.authors[attempt.who]
        statement = author.statement(
            attempt.stream or self.case,
            attempt.kind,
            attempt.body,
            for_=None if attempt.for_ is None else self.id(attempt.for_),
            at=attempt.at,
        )
        return self.world.ledger.submit(author.sign(statement))

    def say(self, who: str, kind: str, body: dict[str, Any], *, for_: str | None = None) -> Receipt:
        """Submit a statement that must be accepted as a new entry."""
        accepted = self.submit(Attempt(who, kind, body, for_))
        assert accepted.created
        return accepted.receipt

    def reject(self, attempt: Attempt) -> RuleViolated:
        """Submit a statement that must be turned away without leaving a trace."""
        before = fingerprint(self.world.ledger)
        with pytest.raises(RuleViolated) as caught:
            self.submit(attempt)
        assert fingerprint(self.world.ledger) == before
        return caught.value

    def stored(self) -> Case:
        """The case as a cold ledger instance folds it from the store."""
        ledger = self.world.reopen()
        try:
            assert isinstance(ledger, DecisionRecord)
            return ledger.case(self.case)
        finally:
            ledger.close()

    # -- the story's building blocks -------------------------------------------------------

    def join(self, handle: str, role: str, **extra: Any) -> Receipt:
        body = {"person": self.id(handle), "role": role, **extra}
        return self.say("lead", "participant.joined", body)

    def leave(self, handle: str) -> Receipt:
        body = {"person": self.id(handle), "reason": "Moved to another service."}
        return self.say("lead", "participant.left", body)

    def open_decision(
        self,
        who: str = "lead",
        required: tuple[str, ...] = ("lead", "grace", "daniel"),
        revisits: str | None = None,
        question: str = QUESTION,
    ) -> str:
        decision = str(uuid.uuid4())
        body: dict[str, Any] = {
            "decision": decision,
            "question": question,
            "required": [self.id(handle) for handle in required],
        }
        if revisits is not None:
            body["revisits"] = revisits
        self.say(who, "decision.opened", body)
        return decision

    def propose(
        self, key: str, who: str, *, decision: str | None = None, do_nothing: bool = False
    ) -> Option:
        decision = decision or self.decision
        proposal = str(uuid.uuid4())
        body: dict[str, Any] = {
            "decision": decision,
            "proposal": proposal,
            "title": TITLES.get(key, key),
        }
        if do_nothing:
            body["do_nothing"] = True
        receipt = self.say(who, "proposal.made", body)
        self.options[key] = Option(decision, proposal, receipt.hash)
        return self.options[key]

    def withdraw(self, key: str, who: str) -> Receipt:
        body = {"decision": self.options[key].decision, "proposal": self.options[key].id}
        return self.say(who, "proposal.withdrawn", body)

    def opinion(self, key: str = "home", stance: str = "support") -> dict[str, Any]:
        return {**self.options[key].ref(), "stance": stance, "reasons": "It suits Seun."}

    def view(self, decision: str | None = None) -> dict[str, Any]:
        return {
            "decision": decision or self.decision,
            "view": "I like swimming. Clinic is tiring after school.",
            "method": "pictures",
            "support": "Picture cards with Priya.",
        }

    def feedback(self, view: str) -> dict[str, Any]:
        return {"decision": self.decision, "view": view, "influence": "We listened."}

    def competent(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "person": self.id("child"),
            "competent": True,
            "reasoning": "Seun understands the options, their benefits and risks, and can choose.",
        }

    def deferral(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": "Waiting for X-rays.", "until": "2099-01-01"}

    def concern(self) -> dict[str, Any]:
        return {"concern": "Unexplained bruising.", "referred_to": "Children's services"}

    def correction(self, entry: str) -> dict[str, Any]:
        return {"entry": entry, "correction": "Two clinic sessions.", "reason": "Typing error."}

    def new_case(self, by: str, lead: str) -> Attempt:
        body = {"child": self.id("child"), "title": "Another case", "lead": self.id(lead)}
        return Attempt(by, "case.opened", body, stream=str(uuid.uuid4()))

    def hear_child(self, decision: str | None = None) -> str:
        """Priya records Seun's view on his behalf; returns the view's entry hash."""
        return self.say("priya", "child_view.recorded", self.view(decision), for_="child").hash

    def treatment(self, key: str = "home") -> dict[str, Any]:
        return {
            "decision": self.options[key].decision,
            "basis": "parental responsibility",
            "scope": {"type": "treatment", "proposal_hash": self.options[key].hash},
        }

    def sharing(self, organisation: str = SCHOOL, days: int = 183) -> dict[str, Any]:
        """A sharing consent's body for the organisation registered under that name."""
        return {
            "basis": "parental responsibility",
            "scope": {
                "type": "sharing",
                "organisation": self.world.organisation(organisation),
                "purpose": "Support Seun's exercise plan",
                "data_kinds": ["decision", "proposal", "action"],
                "until": (datetime.now(UTC).date() + timedelta(days=days)).isoformat(),
            },
        }

    def consent(self, key: str = "home", who: str = "grace") -> str:
        """Treatment consent for a proposal; returns the consent's entry hash."""
        return self.say(who, "consent.given", self.treatment(key)).hash

    def withdraw_consent(self, consent: str, who: str = "grace") -> Receipt:
        body = {"consent": consent, "reason": "We want to think again."}
        return self.say(who, "consent.withdrawn", body)

    def agreement(self, key: str = "home") -> dict[str, Any]:
        return {**self.options[key].ref(), "rationale": "A plan Seun can live with."}

    def agree(self, who: str, key: str = "home") -> Receipt:
        return self.say(who, "agreement.given", self.agreement(key))

    def settle(self, key: str = "home") -> Receipt:
        """Hear the child, get consent and everyone's agreement; returns the completing one."""
        self.hear_child(self.options[key].decision)
        self.consent(key)
        self.agree("lead", key)
        self.agree("grace", key)
        return self.agree("daniel", key)

    def share(self, basis: str = "consent", **extra: Any) -> dict[str, Any]:
        return {
            "recipient": self.world.organisation(SCHOOL),
            "purpose": "Support Seun's exercise plan",
            "what": "The home exercise plan.",
            "basis": basis,
            **extra,
        }


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year - years, day=28)


def build_scene(world: World, *, born: date | None = None) -> Scene:
    """Register the cast, open Seun's case with everyone joined and the decision proposed."""
    born = born or years_before(datetime.now(UTC).date(), 9)
    authors = {
        person.handle: world.person(
            person.name,
            person.kind,
            profession=person.profession,
            organisation=person.organisation,
            born=born.isoformat() if person.kind == "child" else None,
        )
        for person in CAST
    }
    scene = Scene(world, str(uuid.uuid4()), authors)
    scene.say(
        "lead",
        "case.opened",
        {"child": scene.id("child"), "title": "Seun's physiotherapy", "lead": scene.id("lead")},
    )
    for person in CAST:
        if person.role is None:
            continue
        extra: dict[str, Any] = {}
        if person.parental_responsibility:
            extra["parental_responsibility"] = True
        if person.organisation is not None:
            extra["organisation"] = world.organisation(person.organisation)
        scene.join(person.handle, person.role, **extra)
    scene.say("grace", "preferences.stated", {"preferred_name": PREFERRED}, for_="child")
    scene.decision = scene.open_decision()
    scene.propose("clinic", "lead")
    scene.propose("home", "sam")
    scene.propose("as_now", "lead", do_nothing=True)
    return scene


@pytest.fixture
def scene(record: World) -> Scene:
    return build_scene(record)


def assert_explains(error: RuleViolated, code: str, rule: str, mentions: tuple[str, ...]) -> None:
    """The rejection's code and rule, and a detail a person can read: a sentence with names."""
    assert (error.code, error.rule) == (code, rule), error.detail
    detail = error.detail
    assert detail[:1].isupper() and detail.endswith("."), detail
    assert not UUID_IN_TEXT.search(detail), f"names a person or thing by id: {detail}"
    assert not HASH_IN_TEXT.search(detail), f"names an entry by hash: {detail}"
    assert not RULE_ID_IN_TEXT.search(detail), f"talks in rule ids: {detail}"
    for name in mentions:
        assert name in detail, f"{name!r} not in {detail!r}"
    if PREFERRED in mentions:
        assert CHILD.split()[0] not in detail, "the child is named by their preferred name"


# == statements the rules turn away, one function per case ==================================
#
# Each function sets the scene up and returns the statement to try; its name is the spec.


Attempter = Callable[[Scene], Attempt]


@dataclass(frozen=True)
class Forbidden:
    spec: str
    code: str
    rule: str
    mentions: tuple[str, ...]  # what the rejection's sentence must name
    attempt: Attempter


FORBIDDEN: list[Forbidden] = []


def forbids(code: str, rule: str, *mentions: str) -> Callable[[Attempter], Attempter]:
    def register(attempt: Attempter) -> Attempter:
        spec = f"{rule} {attempt.__name__.replace('_', ' ')}"
        FORBIDDEN.append(Forbidden(spec, code, rule, mentions, attempt))
        return attempt

    return register


# -- R1 membership ---------------------------------------------------------------------------


@forbids("not_a_member", "R1", "Olu Adeyemi")
def someone_who_is_not_a_member_cannot_give_an_opinion(s: Scene) -> Attempt:
    return Attempt("olu", "opinion.given", s.opinion())


@forbids("not_a_member", "R1", "Sam Reyes")
def a_member_who_has_left_can_no_longer_speak_in_the_case(s: Scene) -> Attempt:
    s.leave("sam")
    return Attempt("sam", "opinion.given", s.opinion())


@forbids("not_a_member", "R1", "Dr Rita Vance")
def a_safeguarding_reviewer_cannot_be_joined_to_a_case(s: Scene) -> Attempt:
    rita = s.add("rita", "Dr Rita Vance", "professional")
    s.world.authority.appoint_reviewer(rita)
    return Attempt("lead", "participant.joined", {"person": rita, "role": "social_worker"})


@forbids("not_a_member", "R1", "Referral feed")
def a_service_cannot_be_joined_to_a_case(s: Scene) -> Attempt:
    feed = s.add("feed", "Referral feed", "service")
    referrals = s.world.organisation("Referrals")
    body = {"person": feed, "role": "external_partner", "organisation": referrals}
    return Attempt("lead", "participant.joined", body)


@forbids("not_a_member", "R1", "Joan Mensah")
def a_member_later_appointed_reviewer_can_no_longer_speak_in_the_case(s: Scene) -> Attempt:
    s.world.authority.appoint_reviewer(s.id("joan"))
    return Attempt("joan", "opinion.given", s.opinion())


@forbids("not_a_member", "R1", "Referral feed", "service")
def a_service_never_speaks_in_a_case(s: Scene) -> Attempt:
    s.add("feed", "Referral feed", "service")
    return Attempt("feed", "opinion.given", s.opinion())


@forbids("not_a_member", "R1", "Dr Rita Vance")
def a_safeguarding_reviewer_cannot_open_a_case(s: Scene) -> Attempt:
    rita = s.add("rita", "Dr Rita Vance", "professional")
    s.world.authority.appoint_reviewer(rita)
    return s.new_case(by="rita", lead="rita")


@forbids("not_a_member", "R1", "Ola Bankole", "administrator")
def an_administrator_cannot_be_joined_to_a_case(s: Scene) -> Attempt:
    ola = s.add("ola", "Ola Bankole", "professional")
    s.world.authority.appoint_administrator(ola)
    return Attempt("lead", "participant.joined", {"person": ola, "role": "social_worker"})


@forbids("not_a_member", "R1", "Joan Mensah", "administrator")
def a_member_later_appointed_administrator_can_no_longer_speak_in_the_case(s: Scene) -> Attempt:
    s.world.authority.appoint_administrator(s.id("joan"))
    return Attempt("joan", "opinion.given", s.opinion())


@forbids("not_a_member", "R1", "Ola Bankole", "administrator")
def an_administrator_cannot_open_a_case(s: Scene) -> Attempt:
    ola = s.add("ola", "Ola Bankole", "professional")
    s.world.authority.appoint_administrator(ola)
    return s.new_case(by="ola", lead="ola")


@forbids("not_permitted", "R3", "Ade Okon")
def an_adult_cannot_join_as_a_clinician(s: Scene) -> Attempt:
    ade = s.add("ade", "Ade Okon", "adult")
    return Attempt("lead", "participant.joined", {"person": ade, "role": "clinician"})


@forbids("not_a_member", "R1")
def nothing_can_be_said_in_a_case_that_was_never_opened(s: Scene) -> Attempt:
    return Attempt("grace", "opinion.given", s.opinion(), stream=str(uuid.uuid4()))


# -- R3 roles --------------------------------------------------------------------------------


@forbids("not_permitted", "R3")
def an_external_partner_cannot_open_a_decision(s: Scene) -> Attempt:
    body = {"decision": str(uuid.uuid4()), "question": "PE?", "required": [s.id("lead")]}
    return Attempt("school", "decision.opened", body)


@forbids("not_permitted", "R3", "Grace Bello")
def a_parent_cannot_record_that_the_childs_view_could_not_be_obtained(s: Scene) -> Attempt:
    body = {"decision": s.decision, "reason": "He was asleep."}
    return Attempt("grace", "child_view.not_obtained", body)


@forbids("not_permitted", "R3", "Joan Mensah")
def only_a_clinician_assesses_capacity(s: Scene) -> Attempt:
    return Attempt("joan", "capacity.assessed", s.competent())


@forbids("not_permitted", "R3", LEAD)
def only_the_lead_adds_members(s: Scene) -> Attempt:
    return Attempt("sam", "participant.joined", {"person": s.id("olu"), "role": "carer"})


@forbids("not_permitted", "R3", LEAD)
def only_the_lead_records_that_a_member_left(s: Scene) -> Attempt:
    body = {"person": s.id("peter"), "reason": "Moved away."}
    return Attempt("sam", "participant.left", body)


@forbids("not_permitted", "R3", LEAD)
def only_the_lead_defers_a_decision(s: Scene) -> Attempt:
    return Attempt("sam", "decision.deferred", s.deferral())


@forbids("not_permitted", "R3")
def only_its_author_withdraws_a_proposal(s: Scene) -> Attempt:
    body = {"decision": s.decision, "proposal": s.options["home"].id}
    return Attempt("lead", "proposal.withdrawn", body)


@forbids("not_permitted", "R3", "Sam Reyes")
def only_a_required_participant_gives_agreement(s: Scene) -> Attempt:
    return Attempt("sam", "agreement.given", s.agreement())


@forbids("not_permitted", "R3", PREFERRED, "Grace Bello")
def only_a_professional_gives_the_child_feedback(s: Scene) -> Attempt:
    return Attempt("grace", "feedback.given", s.feedback(s.hear_child()))


@forbids("not_permitted", "R3", "Grace Bello")
def only_a_professional_records_information_sharing(s: Scene) -> Attempt:
    body = s.share("safeguarding", justification="I am worried.")
    return Attempt("grace", "information.shared", body)


@forbids("not_permitted", "R3", "Daniel Bello")
def only_a_professional_raises_a_safeguarding_concern(s: Scene) -> Attempt:
    return Attempt("daniel", "safeguarding.concern_raised", s.concern())


@forbids("not_permitted", "R3", "Ruth Lewis")
def an_external_partner_cannot_assign_actions(s: Scene) -> Attempt:
    body = {
        "decision": s.decision,
        "action": str(uuid.uuid4()),
        "owner": s.id("school"),
        "due": "2099-01-01",
    }
    return Attempt("school", "action.assigned", body)


@forbids("not_permitted", "R3", "Grace Bello")
def only_a_professional_schedules_reviews(s: Scene) -> Attempt:
    body = {"decision": s.decision, "due": "2099-01-01"}
    return Attempt("grace", "review.scheduled", body)


@forbids("not_permitted", "R3")
def only_a_clinician_opens_a_case(s: Scene) -> Attempt:
    return s.new_case(by="grace", lead="grace")


@forbids("not_permitted", "R3")
def whoever_opens_a_case_is_its_lead(s: Scene) -> Attempt:
    return s.new_case(by="sam", lead="lead")


@forbids("not_permitted", "R3", "Olu Adeyemi")
def only_someone_registered_as_a_professional_joins_as_one(s: Scene) -> Attempt:
    return Attempt("lead", "participant.joined", {"person": s.id("olu"), "role": "advocate"})


# -- R4 on behalf ----------------------------------------------------------------------------


@forbids("not_permitted", "R4")
def an_opinion_cannot_be_given_on_someones_behalf(s: Scene) -> Attempt:
    return Attempt("priya", "opinion.given", s.opinion(), for_="child")


@forbids("not_permitted", "R4", PREFERRED)
def a_view_can_only_be_recorded_on_behalf_of_the_cases_child(s: Scene) -> Attempt:
    return Attempt("priya", "child_view.recorded", s.view(), for_="grace")


@forbids("not_permitted", "R4", PREFERRED)
def the_child_speaks_for_themself_not_on_their_own_behalf(s: Scene) -> Attempt:
    return Attempt("child", "child_view.recorded", s.view(), for_="child")


@forbids("not_permitted", "R4", PREFERRED)
def an_external_partner_cannot_record_the_childs_view_for_them(s: Scene) -> Attempt:
    return Attempt("school", "child_view.recorded", s.view(), for_="child")


@forbids("not_permitted", "R4", PREFERRED)
def an_external_partner_cannot_state_the_childs_preferences_for_them(s: Scene) -> Attempt:
    return Attempt("school", "preferences.stated", {"language": "French"}, for_="child")


@forbids("not_permitted", "R4", PREFERRED)
def a_view_recorded_by_an_adult_must_say_it_is_on_the_childs_behalf(s: Scene) -> Attempt:
    return Attempt("grace", "child_view.recorded", s.view())


# -- R5 references ---------------------------------------------------------------------------


@forbids("rule_violated", "R5")
def an_opinion_on_a_decision_that_does_not_exist(s: Scene) -> Attempt:
    return Attempt("grace", "opinion.given", {**s.opinion(), "decision": str(uuid.uuid4())})


@forbids("stale_reference", "R5", TITLES["home"])
def an_opinion_on_a_withdrawn_proposal_is_stale(s: Scene) -> Attempt:
    s.withdraw("home", "sam")
    return Attempt("grace", "opinion.given", s.opinion("home"))


@forbids("stale_reference", "R5", TITLES["home"])
def an_agreement_on_a_withdrawn_proposal_is_stale(s: Scene) -> Attempt:
    s.withdraw("home", "sam")
    return Attempt("grace", "agreement.given", s.agreement("home"))


@forbids("stale_reference", "R5")
def a_proposal_id_and_hash_that_name_different_proposals_are_stale(s: Scene) -> Attempt:
    body = {**s.opinion("home"), "proposal": s.options["clinic"].id}
    return Attempt("grace", "opinion.given", body)


@forbids("rule_violated", "R5", QUESTION)
def an_opinion_on_an_agreed_decision(s: Scene) -> Attempt:
    s.settle()
    return Attempt("sam", "opinion.given", s.opinion("clinic", "concern"))


@forbids("rule_violated", "R5", QUESTION)
def a_proposal_on_an_agreed_decision(s: Scene) -> Attempt:
    s.settle()
    body = {"decision": s.decision, "proposal": str(uuid.uuid4()), "title": "Hydrotherapy"}
    return Attempt("sam", "proposal.made", body)


@forbids("rule_violated", "R5", PREFERRED)
def feedback_on_a_view_that_was_never_recorded(s: Scene) -> Attempt:
    return Attempt("priya", "feedback.given", s.feedback(s.options["home"].hash))


@forbids("rule_violated", "R5", PREFERRED)
def feedback_on_a_view_recorded_for_another_decision(s: Scene) -> Attempt:
    other = s.open_decision(question="Should Seun try a new walking frame?")
    return Attempt("priya", "feedback.given", s.feedback(s.hear_child(other)))


@forbids("rule_violated", "R5")
def withdrawing_something_that_is_not_a_consent(s: Scene) -> Attempt:
    return Attempt("grace", "consent.withdrawn", {"consent": s.options["home"].hash})


@forbids("rule_violated", "R5")
def correcting_an_entry_that_is_not_in_the_case(s: Scene) -> Attempt:
    return Attempt("sam", "entry.corrected", s.correction("ab" * 32))


@forbids("rule_violated", "R5")
def only_an_agreed_decision_can_be_revisited(s: Scene) -> Attempt:
    body = {
        "decision": str(uuid.uuid4()),
        "question": "Should we think again?",
        "required": [s.id("lead")],
        "revisits": s.decision,
    }
    return Attempt("lead", "decision.opened", body)


@forbids("rule_violated", "R5", "Olu Adeyemi")
def only_members_can_be_required_to_agree(s: Scene) -> Attempt:
    body = {"decision": str(uuid.uuid4()), "question": "PE?", "required": [s.id("olu")]}
    return Attempt("lead", "decision.opened", body)


# -- R8 entitlement --------------------------------------------------------------------------


@forbids("rule_violated", "R8", PREFERRED, "Peter Bello")
def a_parent_without_parental_responsibility_cannot_consent(s: Scene) -> Attempt:
    return Attempt("peter", "consent.given", s.treatment())


@forbids("rule_violated", "R8", PREFERRED, "Peter Bello")
def a_parent_without_parental_responsibility_cannot_refuse_consent_either(s: Scene) -> Attempt:
    return Attempt("peter", "consent.refused", s.treatment())


@forbids("rule_violated", "R8", PREFERRED)
def a_nine_year_old_not_assessed_competent_cannot_consent(s: Scene) -> Attempt:
    return Attempt("child", "consent.given", s.treatment())


@forbids("rule_violated", "R8", PREFERRED)
def a_child_assessed_not_competent_cannot_consent(s: Scene) -> Attempt:
    s.say("sam", "capacity.assessed", {**s.competent(), "competent": False})
    return Attempt("child", "consent.given", s.treatment())


@forbids("rule_violated", "R8", PREFERRED)
def competence_for_another_decision_does_not_count(s: Scene) -> Attempt:
    other = s.open_decision(question="Should Seun try a new walking frame?")
    s.say("sam", "capacity.assessed", {**s.competent(), "decision": other})
    return Attempt("child", "consent.given", s.treatment())


@forbids("rule_violated", "R8", PREFERRED)
def a_child_under_sixteen_cannot_consent_to_sharing(s: Scene) -> Attempt:
    s.say("lead", "capacity.assessed", s.competent())  # competent for the treatment decision
    return Attempt("child", "consent.given", s.sharing())


ALL_DATA_KINDS = list(get_args(DataKind))


@forbids("rule_violated", "R5", "not registered")
def a_child_competent_for_one_decision_cannot_consent_to_sharing_with_an_unknown_company(
    s: Scene,
) -> Attempt:
    inhaler = s.open_decision(question="Should Seun use a preventer inhaler at school?")
    s.say("lead", "capacity.assessed", {**s.competent(), "decision": inhaler})
    body = {
        "decision": inhaler,
        "basis": "my own decision",
        "scope": {
            "type": "sharing",
            "organisation": str(uuid.uuid4()),  # an id no one registered
            "purpose": "Marketing",
            "data_kinds": ALL_DATA_KINDS,
            "until": (datetime.now(UTC).date() + timedelta(days=30)).isoformat(),
        },
    }
    return Attempt("child", "consent.given", body)


@forbids("rule_violated", "R8", PREFERRED, "whole case")
def competence_for_one_decision_does_not_cover_a_sharing_consent_for_the_whole_case(
    s: Scene,
) -> Attempt:
    s.say("lead", "capacity.assessed", s.competent())
    return Attempt("child", "consent.given", s.sharing())


@forbids("rule_violated", "R5", "not registered")
def an_external_partner_joins_for_a_registered_organisation(s: Scene) -> Attempt:
    teacher = s.add("teacher", "Tom Hale", "professional")
    body = {"person": teacher, "role": "external_partner", "organisation": str(uuid.uuid4())}
    return Attempt("lead", "participant.joined", body)


@forbids("rule_violated", "R8", PREFERRED, LEAD)
def a_clinician_cannot_consent_for_the_child(s: Scene) -> Attempt:
    return Attempt("lead", "consent.given", s.treatment())


# -- R10 withdrawal --------------------------------------------------------------------------


@forbids("rule_violated", "R10")
def a_consent_cannot_be_withdrawn_twice(s: Scene) -> Attempt:
    consent = s.consent()
    s.withdraw_consent(consent)
    return Attempt("grace", "consent.withdrawn", {"consent": consent})


@forbids("not_permitted", "R10", PREFERRED)
def a_parent_without_parental_responsibility_cannot_withdraw_consent(s: Scene) -> Attempt:
    return Attempt("peter", "consent.withdrawn", {"consent": s.consent()})


@forbids("not_permitted", "R10", PREFERRED)
def a_clinician_cannot_withdraw_a_parents_consent(s: Scene) -> Attempt:
    return Attempt("sam", "consent.withdrawn", {"consent": s.consent()})


# -- R11 corrections -------------------------------------------------------------------------


@forbids("not_permitted", "R11")
def a_member_cannot_correct_someone_elses_entry(s: Scene) -> Attempt:
    return Attempt("grace", "entry.corrected", s.correction(s.options["home"].hash))


# -- R12 sharing -----------------------------------------------------------------------------


@forbids("rule_violated", "R12", PREFERRED, SCHOOL)
def consent_to_share_with_another_organisation_does_not_cover_the_recipient(
    s: Scene,
) -> Attempt:
    consent = s.say("grace", "consent.given", s.sharing(SURGERY)).hash
    return Attempt("lead", "information.shared", s.share(consent=consent))


@forbids("rule_violated", "R12", PREFERRED, SCHOOL)
def sharing_on_consent_needs_a_consent(s: Scene) -> Attempt:
    return Attempt("lead", "information.shared", s.share())


@forbids("rule_violated", "R12", PREFERRED, SCHOOL)
def treatment_consent_is_not_consent_to_share(s: Scene) -> Attempt:
    return Attempt("lead", "information.shared", s.share(consent=s.consent()))


@forbids("rule_violated", "R12", PREFERRED, SCHOOL)
def withdrawn_consent_no_longer_covers_sharing(s: Scene) -> Attempt:
    consent = s.say("grace", "consent.given", s.sharing()).hash
    s.withdraw_consent(consent, "daniel")
    return Attempt("lead", "information.shared", s.share(consent=consent))


@forbids("rule_violated", "R12", "safeguarding")
def a_safeguarding_share_needs_a_justification(s: Scene) -> Attempt:
    return Attempt("lead", "information.shared", s.share("safeguarding"))


@forbids("rule_violated", "R12", "safeguarding")
def a_blank_justification_is_no_justification(s: Scene) -> Attempt:
    body = s.share("safeguarding", justification="  \n ")
    return Attempt("lead", "information.shared", body)


@forbids("rule_violated", "R12", "legal duty")
def a_share_under_a_legal_duty_needs_a_justification(s: Scene) -> Attempt:
    return Attempt("lead", "information.shared", s.share("legal_duty"))


@forbids("rule_violated", "R12")
def a_sharing_consent_that_has_already_ended(s: Scene) -> Attempt:
    return Attempt("grace", "consent.given", s.sharing(days=-1))


@pytest.mark.parametrize("forbidden", FORBIDDEN, ids=lambda forbidden: forbidden.spec)
def test_a_statement_the_rules_forbid_is_turned_away_with_a_reason_and_leaves_no_trace(
    scene: Scene, forbidden: Forbidden
) -> None:
    attempt = forbidden.attempt(scene)
    version = scene.stored().version

    error = scene.reject(attempt)

    assert_explains(error, forbidden.code, forbidden.rule, forbidden.mentions)
    assert scene.stored().version == version


# == statements the rules let in, one function per case =====================================


@dataclass(frozen=True)
class Allowed:
    spec: str
    attempt: Attempter


ALLOWED: list[Allowed] = []


def allows(rule: str, spec: str | None = None) -> Callable[[Attempter], Attempter]:
    def register(attempt: Attempter) -> Attempter:
        ALLOWED.append(Allowed(f"{rule} {spec or attempt.__name__.replace('_', ' ')}", attempt))
        return attempt

    return register


# -- R1 ----------------------------------------------------------------------------------------


@allows("R1")
def a_member_whose_administrator_appointment_ended_speaks_again(s: Scene) -> Attempt:
    joan = s.id("joan")
    s.world.authority.appoint_administrator(joan)
    s.world.authority.remove_administrator(joan, "moved to the ward")
    return Attempt("joan", "opinion.given", s.opinion())


@allows("R1")
def an_active_member_gives_an_opinion(s: Scene) -> Attempt:
    return Attempt("grace", "opinion.given", s.opinion())


@allows("R1")
def the_child_is_a_member_of_their_own_case(s: Scene) -> Attempt:
    return Attempt("child", "opinion.given", s.opinion("as_now"))


@allows("R1")
def a_member_who_rejoined_speaks_again(s: Scene) -> Attempt:
    s.leave("sam")
    s.join("sam", "clinician")
    return Attempt("sam", "opinion.given", s.opinion())


# -- R3 ----------------------------------------------------------------------------------------


@allows("R3")
def the_lead_adds_a_member(s: Scene) -> Attempt:
    return Attempt("lead", "participant.joined", {"person": s.id("olu"), "role": "carer"})


@allows("R3")
def the_lead_defers_a_decision(s: Scene) -> Attempt:
    return Attempt("lead", "decision.deferred", s.deferral())


@allows("R3")
def a_parent_opens_a_decision(s: Scene) -> Attempt:
    body = {
        "decision": str(uuid.uuid4()),
        "question": "Which swimming club?",
        "required": [s.id("grace"), s.id("daniel")],
    }
    return Attempt("grace", "decision.opened", body)


@allows("R3")
def an_external_partner_makes_a_proposal(s: Scene) -> Attempt:
    body = {"decision": s.decision, "proposal": str(uuid.uuid4()), "title": "PE at school"}
    return Attempt("school", "proposal.made", body)


@allows("R3")
def its_author_withdraws_a_proposal(s: Scene) -> Attempt:
    body = {"decision": s.decision, "proposal": s.options["home"].id}
    return Attempt("sam", "proposal.withdrawn", body)


@allows("R3")
def a_clinician_assesses_capacity(s: Scene) -> Attempt:
    return Attempt("sam", "capacity.assessed", s.competent())


@allows("R3")
def a_social_worker_records_why_the_childs_view_could_not_be_obtained(s: Scene) -> Attempt:
    body = {"decision": s.decision, "reason": "Seun was unwell all week."}
    return Attempt("joan", "child_view.not_obtained", body)


@allows("R3")
def an_advocate_gives_the_child_feedback(s: Scene) -> Attempt:
    return Attempt("priya", "feedback.given", s.feedback(s.hear_child()))


@allows("R3")
def a_clinician_gives_the_child_feedback(s: Scene) -> Attempt:
    return Attempt("sam", "feedback.given", s.feedback(s.hear_child()))


@allows("R3")
def a_required_participant_gives_agreement(s: Scene) -> Attempt:
    return Attempt("grace", "agreement.given", s.agreement())


@allows("R3")
def a_social_worker_raises_a_safeguarding_concern(s: Scene) -> Attempt:
    return Attempt("joan", "safeguarding.concern_raised", s.concern())


# -- R4 ----------------------------------------------------------------------------------------


def _view_for_the_child_by(who: str) -> Attempter:
    def attempt(s: Scene) -> Attempt:
        return Attempt(who, "child_view.recorded", s.view(), for_="child")

    return attempt


for _who, _role in (
    ("priya", "advocate"),
    ("grace", "parent"),
    ("peter", "parent without parental responsibility"),
    ("rose", "carer"),
    ("sam", "clinician"),
    ("joan", "social worker"),
):
    allows("R4", f"the child's view recorded on their behalf by the {_role}")(
        _view_for_the_child_by(_who)
    )


@allows("R4")
def the_child_records_their_own_view(s: Scene) -> Attempt:
    return Attempt("child", "child_view.recorded", s.view())


@allows("R4")
def an_advocate_states_the_childs_preferences_on_their_behalf(s: Scene) -> Attempt:
    body = {"communication_needs": "Picture cards; give him time."}
    return Attempt("priya", "preferences.stated", body, for_="child")


@allows("R4")
def an_external_partner_states_their_own_preferences(s: Scene) -> Attempt:
    return Attempt("school", "preferences.stated", {"language": "English"})


# -- R5 ----------------------------------------------------------------------------------------


@allows("R5")
def an_opinion_naming_a_live_proposal_by_its_id_and_hash(s: Scene) -> Attempt:
    return Attempt("daniel", "opinion.given", s.opinion("home", "concern"))


@allows("R5")
def an_opinion_on_doing_nothing(s: Scene) -> Attempt:
    return Attempt("grace", "opinion.given", s.opinion("as_now", "oppose"))


# -- R8 ----------------------------------------------------------------------------------------


@allows("R8")
def a_parent_with_parental_responsibility_consents(s: Scene) -> Attempt:
    return Attempt("grace", "consent.given", s.treatment())


@allows("R8")
def a_carer_with_parental_responsibility_consents(s: Scene) -> Attempt:
    return Attempt("rose", "consent.given", s.treatment())


@allows("R8")
def a_parent_with_parental_responsibility_refuses_consent(s: Scene) -> Attempt:
    return Attempt("daniel", "consent.refused", s.treatment("clinic"))


@allows("R8")
def a_child_assessed_competent_by_a_clinician_consents(s: Scene) -> Attempt:
    s.say("sam", "capacity.assessed", s.competent())
    return Attempt("child", "consent.given", s.treatment())


# -- R10 ---------------------------------------------------------------------------------------


@allows("R10")
def the_other_parent_with_parental_responsibility_withdraws_a_consent(s: Scene) -> Attempt:
    return Attempt("daniel", "consent.withdrawn", {"consent": s.consent()})


# -- R11 ---------------------------------------------------------------------------------------


@allows("R11")
def an_author_corrects_their_own_entry(s: Scene) -> Attempt:
    return Attempt("sam", "entry.corrected", s.correction(s.options["home"].hash))


@allows("R11")
def the_lead_corrects_someone_elses_entry(s: Scene) -> Attempt:
    opinion = s.say("grace", "opinion.given", s.opinion()).hash
    return Attempt("lead", "entry.corrected", s.correction(opinion))


# -- R12 ---------------------------------------------------------------------------------------


@allows("R12")
def sharing_with_the_organisation_the_consent_names(s: Scene) -> Attempt:
    consent = s.say("grace", "consent.given", s.sharing()).hash
    return Attempt("lead", "information.shared", s.share(consent=consent))


@allows("R8", "a child competent for a decision consents to sharing that decision's entries")
def a_competent_child_consents_to_sharing_what_concerns_that_decision(s: Scene) -> Attempt:
    s.say("lead", "capacity.assessed", s.competent())
    return Attempt("child", "consent.given", {**s.sharing(), "decision": s.decision})


@allows("R12")
def sharing_under_a_legal_duty_with_a_justification(s: Scene) -> Attempt:
    body = s.share("legal_duty", justification="Court order for the school.")
    return Attempt("joan", "information.shared", body)


@pytest.mark.parametrize("allowed", ALLOWED, ids=lambda allowed: allowed.spec)
def test_a_statement_the_rules_allow_is_recorded_in_the_case(
    scene: Scene, allowed: Allowed
) -> None:
    attempt = allowed.attempt(scene)
    version = scene.stored().version

    accepted = scene.submit(attempt)

    assert accepted.created
    case = scene.stored()
    assert case.version == version + 1 == accepted.receipt.seq
    entry = case.entries[accepted.receipt.hash]
    assert (entry.kind, entry.by) == (attempt.kind, scene.id(attempt.who))
    assert entry.on_behalf_of == (None if attempt.for_ is None else scene.id(attempt.for_))


# == R6, R7, R9: when a decision becomes agreed ============================================


def test_agreements_that_do_not_complete_a_decision_are_accepted_before_anything_else_holds(
    scene: Scene,
) -> None:
    # Seun not yet heard, no consent, and only one option left on the table.
    scene.withdraw("clinic", "lead")
    scene.withdraw("as_now", "lead")

    scene.agree("lead")
    scene.agree("grace")

    case = scene.stored()
    decision = case.decisions[scene.decision]
    assert case.status(decision) == "open"
    assert set(decision.agreements) == {scene.id("lead"), scene.id("grace")}
    assert decision.agreed_hash is None and decision.agreed_at is None


def test_everyone_agreeing_on_different_proposals_does_not_complete_the_decision(
    scene: Scene,
) -> None:
    # Nothing else holds either: the rules only ask for R6, R7 and R9 when it would complete.
    scene.agree("lead", "clinic")
    scene.agree("grace", "home")
    scene.agree("daniel", "home")

    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "open"


def test_the_completing_agreement_is_refused_until_the_child_is_heard(scene: Scene) -> None:
    scene.consent()
    scene.agree("lead")
    scene.agree("grace")

    error = scene.reject(Attempt("daniel", "agreement.given", scene.agreement()))

    assert_explains(error, "rule_violated", "R6", (PREFERRED,))
    reason = {"decision": scene.decision, "reason": "Seun was in hospital all month."}
    scene.say("joan", "child_view.not_obtained", reason)
    scene.agree("daniel")
    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "agreed"


def test_the_completing_agreement_is_refused_with_fewer_than_two_options(scene: Scene) -> None:
    scene.withdraw("clinic", "lead")
    scene.withdraw("as_now", "lead")
    scene.hear_child()
    scene.consent()
    scene.agree("lead")
    scene.agree("grace")

    error = scene.reject(Attempt("daniel", "agreement.given", scene.agreement()))

    assert_explains(error, "rule_violated", "R7", ())
    scene.propose("Hydrotherapy", "sam")
    scene.agree("daniel")
    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "agreed"


def test_doing_nothing_counts_as_one_of_the_two_options(scene: Scene) -> None:
    scene.withdraw("clinic", "lead")  # left: the home programme, and carrying on as now

    scene.settle()

    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "agreed"


def _no_consent(s: Scene) -> None:
    pass


def _consent_to_another_proposal(s: Scene) -> None:
    s.consent("clinic")


def _consent_refused(s: Scene) -> None:
    s.say("grace", "consent.refused", s.treatment())


def _consent_withdrawn(s: Scene) -> None:
    s.withdraw_consent(s.consent())


@pytest.mark.parametrize(
    "consents",
    [
        pytest.param(_no_consent, id="no consent"),
        pytest.param(_consent_to_another_proposal, id="consent to another proposal"),
        pytest.param(_consent_refused, id="consent refused"),
        pytest.param(_consent_withdrawn, id="consent withdrawn"),
    ],
)
def test_the_completing_agreement_is_refused_without_active_treatment_consent(
    scene: Scene, consents: Callable[[Scene], None]
) -> None:
    scene.hear_child()
    consents(scene)
    scene.agree("lead")
    scene.agree("grace")

    error = scene.reject(Attempt("daniel", "agreement.given", scene.agreement()))

    assert_explains(error, "rule_violated", "R9", ())
    scene.consent("home", "daniel")
    scene.agree("daniel")
    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "agreed"


def test_a_decision_is_agreed_at_the_moment_of_the_agreement_that_completes_it(
    scene: Scene,
) -> None:
    scene.hear_child()
    scene.consent()
    first = scene.agree("lead")
    scene.agree("grace")
    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "open"

    completing = scene.agree("daniel")

    case = scene.stored()
    decision = case.decisions[scene.decision]
    assert case.status(decision) == "agreed"
    assert decision.agreed_hash == scene.options["home"].hash
    assert decision.agreed_at == completing.recorded_at != first.recorded_at


# == R8: a child's own consent ==============================================================


@pytest.mark.parametrize(
    ("age", "days_since_birthday"),
    [
        pytest.param(16, 0, id="sixteen today"),
        pytest.param(17, 100, id="seventeen"),
    ],
)
def test_a_child_aged_sixteen_or_over_consents_without_an_assessment(
    record: World, age: int, days_since_birthday: int
) -> None:
    birthday = datetime.now(UTC).date() - timedelta(days=days_since_birthday)
    scene = build_scene(record, born=years_before(birthday, age))

    consent = scene.say("child", "consent.given", scene.treatment())

    case = scene.stored()
    assert case.consents[consent.hash].by == scene.id("child")
    assert case.treatment_consent(scene.options["home"].hash, case.recorded_at) is not None


def test_a_child_one_day_short_of_sixteen_cannot_consent_without_an_assessment(
    record: World,
) -> None:
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    scene = build_scene(record, born=years_before(tomorrow, 16))

    error = scene.reject(Attempt("child", "consent.given", scene.treatment()))

    assert_explains(error, "rule_violated", "R8", (PREFERRED,))


# == R10: withdrawing consent ===============================================================


def test_withdrawing_treatment_consent_puts_the_agreed_decision_on_hold_until_consent_returns(
    scene: Scene,
) -> None:
    scene.hear_child()
    consent = scene.consent()
    scene.agree("lead")
    scene.agree("grace")
    agreed = scene.agree("daniel")

    withdrawn = scene.withdraw_consent(consent)

    case = scene.stored()
    decision = case.decisions[scene.decision]
    assert case.status(decision) == "on_hold"
    assert case.consents[consent].withdrawn_at == withdrawn.recorded_at

    scene.consent("home", "daniel")

    case = scene.stored()
    decision = case.decisions[scene.decision]
    assert case.status(decision) == "agreed"
    assert decision.agreed_at == agreed.recorded_at  # fixed by the completing agreement


def test_withdrawing_sharing_consent_stops_sharing_from_that_moment(scene: Scene) -> None:
    consent = scene.say("grace", "consent.given", scene.sharing()).hash
    scene.say("lead", "information.shared", scene.share(consent=consent))
    case = scene.stored()
    school = scene.world.organisation(SCHOOL)
    active = case.sharing_consent(school, case.recorded_at)
    assert active is not None and active.hash == consent
    assert case.sharing_consent(scene.world.organisation(SURGERY), case.recorded_at) is None

    scene.withdraw_consent(consent, "daniel")

    case = scene.stored()
    assert case.sharing_consent(school, case.recorded_at) is None
    error = scene.reject(Attempt("lead", "information.shared", scene.share(consent=consent)))
    assert_explains(error, "rule_violated", "R12", (PREFERRED, SCHOOL))
    assert len(scene.stored().shares) == 1


# == R11: corrections =======================================================================


def test_a_corrected_entry_stays_in_the_case_marked_with_its_corrections(scene: Scene) -> None:
    target = scene.options["home"].hash
    body = scene.correction(target)
    by_author = scene.say("sam", "entry.corrected", body)
    by_lead = scene.say("lead", "entry.corrected", {**body, "correction": "Saturdays."})

    case = scene.stored()
    assert case.entries[target].kind == "proposal.made"
    assert case.decisions[scene.decision].proposals[scene.options["home"].id].hash == target
    assert case.corrections[target] == [by_author.hash, by_lead.hash]
    assert case.entries[by_author.hash].by == scene.id("sam")


# == R12: safeguarding shares ==============================================================


def test_a_justified_safeguarding_share_is_recorded_and_flagged_for_reviewers(
    scene: Scene,
) -> None:
    consent = scene.say("grace", "consent.given", scene.sharing()).hash
    scene.say("lead", "information.shared", scene.share(consent=consent))
    justification = "Seun disclosed harm at home; the school must keep him safe today."

    share = scene.say(
        "joan", "information.shared", scene.share("safeguarding", justification=justification)
    )

    case = scene.stored()
    (flagged,) = case.safeguarding_shares()
    assert flagged.hash == share.hash
    assert (flagged.by, flagged.justification) == (scene.id("joan"), justification)
    assert len(case.shares) == 2


# == R13: time ==============================================================================


def test_a_statement_dated_more_than_five_minutes_ahead_is_refused(scene: Scene) -> None:
    at = format_recorded(datetime.now(UTC) + timedelta(minutes=6))

    error = scene.reject(Attempt("grace", "opinion.given", scene.opinion(), at=at))

    assert_explains(error, "rule_violated", "R13", (at,))


def test_a_statement_dated_a_little_ahead_is_accepted_and_not_late(scene: Scene) -> None:
    at = format_recorded(datetime.now(UTC) + timedelta(minutes=4))

    accepted = scene.submit(Attempt("grace", "opinion.given", scene.opinion(), at=at))

    case = scene.stored()
    assert case.entries[accepted.receipt.hash].at == at
    assert case.late_entries() == []


def test_an_entry_recorded_more_than_a_day_after_its_time_is_accepted_and_flagged_late(
    scene: Scene,
) -> None:
    now = datetime.now(UTC)
    late_at = format_recorded(now - timedelta(hours=25))
    prompt_at = format_recorded(now - timedelta(hours=23))

    late = scene.submit(Attempt("grace", "opinion.given", scene.opinion(), at=late_at))
    scene.submit(Attempt("daniel", "opinion.given", scene.opinion(), at=prompt_at))

    case = scene.stored()
    assert [entry.hash for entry in case.late_entries()] == [late.receipt.hash]
    assert case.entries[late.receipt.hash].at == late_at


# == R14: feedback to the child ============================================================


def _days_after(stamp: str, days: int) -> str:
    return format_recorded(datetime.fromisoformat(stamp) + timedelta(days=days))


def test_a_view_without_feedback_is_overdue_after_fourteen_days_and_not_once_answered(
    scene: Scene,
) -> None:
    view = scene.say("priya", "child_view.recorded", scene.view(), for_="child")
    case = scene.stored()
    assert case.overdue_feedback(_days_after(view.recorded_at, 13)) == []
    overdue = case.overdue_feedback(_days_after(view.recorded_at, 15))
    assert [(decision.id, v.hash) for decision, v in overdue] == [(scene.decision, view.hash)]

    feedback = scene.say("priya", "feedback.given", scene.feedback(view.hash))

    case = scene.stored()
    assert case.overdue_feedback(_days_after(view.recorded_at, 15)) == []
    assert case.decisions[scene.decision].child_views[0].feedback == [feedback.hash]


# == revisiting an agreed decision ==========================================================


def test_an_agreed_revisit_supersedes_the_decision_it_revisits(scene: Scene) -> None:
    scene.settle()
    again = scene.open_decision(
        required=("lead", "grace"),
        revisits=scene.decision,
        question="Now that swimming has started, should Seun's physiotherapy change?",
    )
    scene.propose("Swimming twice a week", "sam", decision=again)
    scene.propose("Keep the home programme", "lead", decision=again, do_nothing=True)
    scene.hear_child(again)
    scene.consent("Swimming twice a week")
    scene.agree("lead", "Swimming twice a week")
    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "agreed"

    completing = scene.agree("grace", "Swimming twice a week")

    case = scene.stored()
    earlier, later = case.decisions[scene.decision], case.decisions[again]
    assert case.status(earlier) == "superseded" and earlier.superseded_by == again
    assert case.status(later) == "agreed" and later.agreed_at == completing.recorded_at
    assert later.revisits == scene.decision


# == found by these tests, since fixed ===================================================


def test_a_case_cannot_be_opened_on_someone_s_behalf(scene: Scene) -> None:
    attempt = replace(scene.new_case(by="lead", lead="lead"), for_="child")

    error = scene.reject(attempt)

    assert_explains(error, "not_permitted", "R4", ())


def test_a_blank_reason_does_not_count_as_the_child_being_heard(scene: Scene) -> None:
    body = {"decision": scene.decision, "reason": "   "}
    before = fingerprint(scene.world.ledger)

    # Required text must say something: blank text is refused as malformed, like any body error.
    with pytest.raises(Malformed) as caught:
        scene.submit(Attempt("joan", "child_view.not_obtained", body))

    assert "reason" in caught.value.detail
    assert fingerprint(scene.world.ledger) == before


def test_a_view_on_a_superseded_decision_can_still_be_answered(scene: Scene) -> None:
    view = scene.hear_child()
    scene.consent()
    scene.agree("lead")
    scene.agree("grace")
    scene.agree("daniel")
    again = scene.open_decision(required=("lead",), revisits=scene.decision, question="Again?")
    scene.propose("Swimming", "lead", decision=again)
    scene.propose("Keep going", "lead", decision=again, do_nothing=True)
    scene.say(
        "joan", "child_view.not_obtained", {"decision": again, "reason": "Seun was in hospital."}
    )
    scene.consent("Swimming")
    scene.agree("lead", "Swimming")
    case = scene.stored()
    assert case.status(case.decisions[scene.decision]) == "superseded"
    later = _days_after(case.recorded_at, 15)
    assert [v.hash for _, v in case.overdue_feedback(later)] == [view]

    scene.say("priya", "feedback.given", scene.feedback(view))

    assert scene.stored().overdue_feedback(later) == []


def test_a_sharing_consent_names_its_organisation_by_id_not_by_a_look_alike_name(
    scene: Scene,
) -> None:
    scene.world.organisation("Riverside Academy")
    body = scene.sharing("Riverside Academy")
    body["scope"]["organisation"] = "Riverside Acade\u04cfy"  # Cyrillic palochka for the m
    before = fingerprint(scene.world.ledger)
    with pytest.raises(RuleViolated, match="organisation is not registered") as refused:
        scene.submit(Attempt("grace", "consent.given", body))
    assert refused.value.rule == "R5"
    assert fingerprint(scene.world.ledger) == before


def test_a_shares_recipient_under_consent_is_the_consents_organisation_shown_by_name(
    scene: Scene,
) -> None:
    consent = scene.say("grace", "consent.given", scene.sharing()).hash
    surgery = scene.world.organisation(SURGERY)
    error = scene.reject(
        Attempt(
            "lead", "information.shared", {**scene.share(consent=consent), "recipient": surgery}
        )
    )
    assert_explains(error, "rule_violated", "R12", (PREFERRED, SURGERY))
