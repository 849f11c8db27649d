"""`accord demo`: play the worked case through the HTTP API with the client SDK.

The people are registered in-process with the authority key (it never leaves the home); each
person of the case gets a key of their own under `HOME/demo/` (mode 0600) and signs their own
statements, which are POSTed like any client's. The school is registered as an organisation and
a safeguarding reviewer is appointed too. The case id, start time, person ids and the school's
organisation id are kept in `HOME/demo/state.json`, so a second run
signs byte-identical statements and the ledger answers each with its original receipt.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from api.client import Client
from api.home import Home
from domain.bodies import SharingScope
from domain.case import Case
from domain.record import DecisionRecord
from domain.worked_case import CAST, SCHOOL, Played, birth_date, play
from ledger import keys
from ledger.author import Author
from ledger.files import write_private
from ledger.receipt import Receipt

REVIEWER = "reviewer"


class DemoState(msgspec.Struct):
    case: str
    start: datetime
    people: dict[str, str] = {}
    organisations: dict[str, str] = {}


def prepare(home: Home, ledger: DecisionRecord) -> tuple[DemoState, dict[str, Author]]:
    """Register the cast, the school and a safeguarding reviewer (once) and load everyone's
    key."""
    folder = home.path / "demo"
    folder.mkdir(mode=0o700, exist_ok=True)
    state_file = folder / "state.json"
    if state_file.exists():
        state = msgspec.json.decode(state_file.read_bytes(), type=DemoState)
        if "school" not in state.organisations:
            # An earlier version's demo, which named the school by name: its case stays as it
            # was recorded, and the case is played afresh beside it, naming the school by id.
            state.case, state.start = str(uuid.uuid4()), _start()
    else:
        state = DemoState(str(uuid.uuid4()), _start())
    authority = home.authority(ledger)
    if REVIEWER not in state.people:
        reviewer = authority.register(
            "Jo Marsh", "professional", profession="safeguarding reviewer"
        )
        authority.appoint_reviewer(reviewer)
        state.people[REVIEWER] = reviewer
        _save(state_file, state)
    if "school" not in state.organisations:
        state.organisations["school"] = authority.register_organisation(SCHOOL)
        _save(state_file, state)
    authors = {}
    for person in CAST:
        key_file = folder / f"{person.handle}.pem"
        if person.handle not in state.people:
            person_id = authority.register(
                person.name,
                person.kind,
                profession=person.profession,
                organisation=person.organisation,
                born=birth_date(state.start) if person.kind == "child" else None,
            )
            key = keys.generate()
            # A key left by a run that stopped before saving the state belongs to no one.
            key_file.unlink(missing_ok=True)
            Path(f"{key_file}.pub").unlink(missing_ok=True)
            keys.save_private_key(key, key_file)
            authority.bind(person_id, key.public_key())
            state.people[person.handle] = person_id
            _save(state_file, state)
        key = keys.load_private_key(key_file)
        authors[person.handle] = Author(ledger.origin, state.people[person.handle], key)
    return state, authors


def seed(home: Home, ledger: DecisionRecord, url: str) -> tuple[Played, int, str]:
    """Play the worked case through the API at `url` with the client SDK.

    Returns what was played, how many entries were new, and the demo reviewer's person id.
    """
    state, authors = prepare(home, ledger)
    created = 0
    with Client(url) as client:

        def submit(data: bytes) -> Receipt:
            nonlocal created
            submitted = client.submit(data)
            created += submitted.created
            return submitted.receipt

        played = play(state.case, authors, submit, state.start, state.organisations["school"])
    return played, created, state.people[REVIEWER]


def describe(case: Case, ledger: DecisionRecord) -> str:
    """A readable summary of a case's plan."""
    directory = ledger.directory()

    def name(person: str | None) -> str:
        known = directory.persons.get(person or "")
        return known.name if known else "unknown"

    def organisation(organisation: str) -> str:
        return directory.organisation_name(organisation) or organisation

    lines = [f"Case: {case.title} ({case.id})", "Members:"]
    for member in case.members.values():
        extra = ", parental responsibility" if member.parental_responsibility else ""
        left = f", left {member.left_at}" if member.left_at else ""
        org = f" ({organisation(member.organisation)})" if member.organisation else ""
        lines.append(f"  {name(member.person)}{org}: {member.role}{extra}{left}")
    for decision in case.decisions.values():
        lines.append(f"Decision: {decision.question}")
        lines.append(f"  status: {case.status(decision)}")
        for proposal in decision.proposals.values():
            mark = "*" if proposal.hash == decision.agreed_hash else "-"
            lines.append(f"  {mark} {proposal.title} (proposed by {name(proposal.by)})")
        for opinion in decision.opinions:
            title = decision.proposals[opinion.proposal].title
            lines.append(f"  {name(opinion.person)}: {opinion.stance} on \u201c{title}\u201d")
        for view in decision.child_views:
            who = f", recorded by {name(view.by)}" if view.on_behalf else ""
            lines.append(
                f"  {name(case.child)}'s view ({view.method}{who}): \u201c{view.view}\u201d"
            )
            for feedback in view.feedback:
                lines.append(f"    feedback given at {case.entries[feedback].recorded_at}")
        if decision.agreed_at:
            agreed = ", ".join(name(p) for p in decision.agreements)
            lines.append(f"  agreed at {decision.agreed_at} by {agreed}")
    lines.append("Consents:")
    for consent in case.consents.values():
        scope = consent.scope
        what = (
            f"sharing with {organisation(scope.organisation)} until {scope.until}"
            if isinstance(scope, SharingScope)
            else "treatment"
        )
        state = f"withdrawn {consent.withdrawn_at}" if consent.withdrawn_at else "active"
        lines.append(f"  {name(consent.by)}: {what} ({state})")
    for target, corrections in case.corrections.items():
        ref = case.entries[target]
        lines.append(
            f"Corrected: {ref.kind} by {name(ref.by)} (seq {ref.seq}), "
            f"{len(corrections)} correction(s), the original still visible"
        )
    for share in case.shares:
        lines.append(f"Shared with {organisation(share.recipient)} on the basis of {share.basis}")
    return "\n".join(lines)


def _start() -> datetime:
    """Statement times are the start plus a second a step: start a minute ago."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def _save(state_file: Path, state: DemoState) -> None:
    write_private(state_file, msgspec.json.encode(state), replace=True)
