"""The worked case as a script of signed statements: Amara's physiotherapy.

The same script drives `accord demo` and the end-to-end tests. Every id is derived from the
case id and the step's name, and every `at` from a fixed start time, so playing it again
produces byte-identical statements: the ledger answers each with its original receipt. The
school is a registered organisation, named by its id: register it once (`SCHOOL` is its name)
and pass the id to every playing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ledger.author import Author
from ledger.receipt import Receipt

SCHOOL = "Hillside Primary School"


@dataclass(frozen=True)
class Person:
    """Someone in the worked case, as the directory registers them."""

    handle: str
    name: str
    kind: str
    profession: str | None = None
    organisation: str | None = None


CAST = (
    Person("amara", "Amara Okoye", "child"),
    Person("okafor", "Dr Ngozi Okafor", "professional", profession="paediatrician"),
    Person("sam", "Sam Reyes", "professional", profession="physiotherapist"),
    Person("grace", "Grace Okoye", "adult"),
    Person("daniel", "Daniel Okoye", "adult"),
    Person("priya", "Priya Shah", "professional", profession="play therapist"),
    Person("school", "Ms Ruth Lewis", "professional", "special needs coordinator", SCHOOL),
)


def birth_date(start: datetime) -> str:
    """Amara is nine."""
    return date(start.year - 9, 3, 14).isoformat()


@dataclass
class Played:
    """Ids and receipts of a played worked case, by step name."""

    case: str
    school: str  # the school's organisation id
    decision: str
    proposals: dict[str, str]
    receipts: dict[str, Receipt] = field(default_factory=dict)

    def hash(self, step: str) -> str:
        return self.receipts[step].hash


Submit = Callable[[bytes], Receipt]


def play(
    case: str, authors: Mapping[str, Author], submit: Submit, start: datetime, school: str
) -> Played:
    """Submit the whole worked case, in order, each statement signed by its own author.

    Step n is dated `start` + n seconds: pass a start a minute or so in the past. `school` is
    the id the directory registered the school under.
    """
    namespace = uuid.UUID(case)

    def ident(name: str) -> str:
        return str(uuid.uuid5(namespace, name))

    played = Played(
        case=case,
        school=school,
        decision=ident("decision"),
        proposals={p: ident(f"proposal:{p}") for p in ("clinic", "home", "as_now")},
    )
    people = {handle: author.person for handle, author in authors.items()}
    step_number = 0

    def say(
        step: str, who: str, kind: str, body: dict[str, Any], for_: str | None = None
    ) -> Receipt:
        nonlocal step_number
        step_number += 1
        at = (start + timedelta(seconds=step_number)).strftime("%Y-%m-%dT%H:%M:%SZ")
        statement = authors[who].statement(
            case, kind, body, for_=for_, statement_id=ident(f"step:{step}"), at=at
        )
        receipt = submit(authors[who].sign(statement))
        played.receipts[step] = receipt
        return receipt

    decision, proposals = played.decision, played.proposals
    say(
        "open",
        "okafor",
        "case.opened",
        {"child": people["amara"], "title": "Amara's physiotherapy", "lead": people["okafor"]},
    )
    for handle, role, extra in (
        ("sam", "clinician", {}),
        ("grace", "parent", {"parental_responsibility": True}),
        ("daniel", "parent", {"parental_responsibility": True}),
        ("priya", "advocate", {}),
        ("school", "external_partner", {"organisation": school}),
    ):
        say(
            f"join:{handle}",
            "okafor",
            "participant.joined",
            {"person": people[handle], "role": role, **extra},
        )
    say(
        "preferences",
        "priya",
        "preferences.stated",
        {
            "preferred_name": "Amara",
            "language": "English",
            "communication_needs": "Picture cards; give her time to choose.",
            "family_involvement": "Mum and Dad together.",
        },
        for_=people["amara"],
    )
    say(
        "decision",
        "okafor",
        "decision.opened",
        {
            "decision": decision,
            "question": "How should Amara's physiotherapy continue for the next six months?",
            "context": "Amara has cerebral palsy; her current block of physiotherapy ends soon.",
            "required": [people["okafor"], people["grace"], people["daniel"]],
        },
    )
    for key, who, title, extra in (
        ("clinic", "okafor", "Twice-weekly clinic sessions", {}),
        ("home", "sam", "One clinic session plus a daily home programme", {}),
        ("as_now", "okafor", "Carry on as now", {"do_nothing": True}),
    ):
        say(
            f"proposal:{key}",
            who,
            "proposal.made",
            {"decision": decision, "proposal": proposals[key], "title": title, **extra},
        )
    home = {
        "decision": decision,
        "proposal": proposals["home"],
        "proposal_hash": played.hash("proposal:home"),
    }
    say(
        "opinion:grace",
        "grace",
        "opinion.given",
        {**home, "stance": "support", "what_matters": "Amara is happier at home."},
    )
    say(
        "opinion:daniel",
        "daniel",
        "opinion.given",
        {**home, "stance": "concern", "reasons": "Fitting it around my shifts."},
    )
    say(
        "opinion:sam",
        "sam",
        "opinion.given",
        {**home, "stance": "support", "reasons": "Daily practice works best for Amara."},
    )
    say(
        "view",
        "priya",
        "child_view.recorded",
        {
            "decision": decision,
            "view": "I like swimming. Clinic is tiring after school.",
            "method": "pictures",
            "support": "Picture cards with Priya, her play therapist.",
        },
        for_=people["amara"],
    )
    say(
        "consent:treatment",
        "grace",
        "consent.given",
        {
            "decision": decision,
            "basis": "parental responsibility",
            "scope": {"type": "treatment", "proposal_hash": played.hash("proposal:home")},
        },
    )
    until = (start.date() + timedelta(days=183)).isoformat()
    say(
        "consent:sharing",
        "grace",
        "consent.given",
        {
            "basis": "parental responsibility",
            "scope": {
                "type": "sharing",
                "organisation": school,
                "purpose": "Support Amara's exercise plan at school",
                "data_kinds": ["decision", "proposal", "action"],
                "until": until,
            },
        },
    )
    for who in ("okafor", "grace", "daniel"):
        say(
            f"agree:{who}",
            who,
            "agreement.given",
            {
                **home,
                "rationale": "A plan Amara can live with.",
                "child_view_considered": "Clinic on Saturdays; swimming counts as exercise.",
            },
        )
    say(
        "feedback",
        "priya",
        "feedback.given",
        {
            "decision": decision,
            "view": played.hash("view"),
            "influence": "You said clinic is tiring after school, so your clinic session is on "
            "Saturdays and swimming counts as exercise.",
        },
    )
    action = ident("action:teach")
    say(
        "action",
        "sam",
        "action.assigned",
        {
            "decision": decision,
            "action": action,
            "owner": people["sam"],
            "due": (start.date() + timedelta(days=14)).isoformat(),
            "description": "Teach the home programme in 12 clinic sessions.",
        },
    )
    say(
        "correction",
        "sam",
        "entry.corrected",
        {
            "entry": played.hash("action"),
            "correction": "2 clinic sessions, not 12.",
            "reason": "Typing error.",
        },
    )
    say(
        "share",
        "okafor",
        "information.shared",
        {
            "recipient": school,
            "purpose": "Support Amara's exercise plan at school",
            "what": "The home exercise plan.",
            "basis": "consent",
            "consent": played.hash("consent:sharing"),
        },
    )
    say(
        "withdraw",
        "daniel",
        "consent.withdrawn",
        {
            "consent": played.hash("consent:sharing"),
            "reason": "We would rather tell the school ourselves.",
        },
    )
    return played
