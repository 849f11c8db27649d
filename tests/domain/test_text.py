"""Every free text of a case or directory statement is checked when it is submitted (no control
or bidirectional control characters, something visible), on each store, and a refusal leaves
the ledger as it was; what a store already holds is read and verified as before."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.case import Case
from domain.record import DecisionRecord
from domain.rules import admit
from ledger.directory import Directory
from ledger.errors import Malformed
from ledger.keys import Ed25519PublicKey
from ledger.ledger import Ledger
from ledger.statement import Submission
from ledger.stream import Stream
from tests.conftest import World, fingerprint
from tests.ledger.test_text import with_forbidden

BAD = st.one_of(
    with_forbidden(),
    st.lists(
        st.sampled_from(["\u200b", "\u200c", "\u2060", "\ufeff", " ", "\t", "\n", "\u00a0"]),
        min_size=1,
    ).map("".join),
    st.just("\u202e" * 4000),
)
SHORT = BAD.filter(lambda text: len(text) <= 200)  # for text of at most 200 characters
CHECKS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Opened:
    """A case opened by Dr Okafor for Amara, with Grace (parental responsibility) in it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.lead = world.person("Dr Ngozi Okafor", "professional", profession="paediatrician")
        self.child = world.person("Amara Okoye", "child", born="2017-03-14")
        self.grace = world.person("Grace Okoye")
        self.case = str(uuid.uuid4())
        self.decision = str(uuid.uuid4())
        self.say(
            self.lead,
            "case.opened",
            {"child": self.child.person, "title": "Physiotherapy", "lead": self.lead.person},
        )
        joined = {"person": self.grace.person, "role": "parent", "parental_responsibility": True}
        self.say(self.lead, "participant.joined", joined)
        required = [self.lead.person, self.grace.person]
        opened = {"decision": self.decision, "question": "How next?", "required": required}
        self.say(self.lead, "decision.opened", opened)

    def say(self, author: Any, kind: str, body: dict[str, Any]) -> None:
        self.world.ledger.submit(author.submission(self.case, kind, body))

    def refused(self, author: Any, kind: str, body: dict[str, Any]) -> str:
        """Submit a statement that must be refused as malformed; returns the problem's detail."""
        before = fingerprint(self.world.ledger)
        with pytest.raises(Malformed) as refused:
            self.say(author, kind, body)
        assert fingerprint(self.world.ledger) == before
        return refused.value.detail


@pytest.fixture
def opened(record: World) -> Opened:
    return Opened(record)


@CHECKS
@given(text=BAD)
def test_reasons_with_no_visible_or_with_control_characters_are_refused(
    opened: Opened, text: str
) -> None:
    detail = opened.refused(
        opened.grace, "dissent.recorded", {"decision": opened.decision, "reasons": text}
    )
    assert detail.startswith("body.reasons: ")


@CHECKS
@given(text=BAD.filter(str.strip))  # white space alone is R12's: no justification at all
def test_a_legal_duty_share_needs_a_visible_justification(opened: Opened, text: str) -> None:
    share = {
        "recipient": "Riverside Academy",
        "purpose": "Attendance",
        "what": "Physiotherapy timetable",
        "basis": "legal_duty",
        "justification": text,
    }
    detail = opened.refused(opened.lead, "information.shared", share)
    assert detail.startswith("body.justification: ")


@CHECKS
@given(text=SHORT)
def test_a_nested_text_is_named_by_its_path(opened: Opened, text: str) -> None:
    scope = {
        "type": "sharing",
        "organisation": opened.world.organisation("Riverside Academy"),
        "purpose": text,
        "data_kinds": ["decision"],
        "until": "2030-01-01",
    }
    detail = opened.refused(
        opened.grace, "consent.given", {"scope": scope, "basis": "parental responsibility"}
    )
    assert detail.startswith("body.scope.purpose: ")


@CHECKS
@given(text=SHORT)
def test_directory_texts_are_checked_too(record: World, text: str) -> None:
    before = fingerprint(record.ledger)
    with pytest.raises(Malformed) as refused:
        record.authority.register(text, "adult")
    assert refused.value.detail.startswith("body.name: ")
    with pytest.raises(Malformed) as refused:
        record.authority.register("Dr Okafor", "professional", profession=text)
    assert refused.value.detail.startswith("body.profession: ")
    assert fingerprint(record.ledger) == before


def test_an_empty_optional_text_is_still_allowed_and_clean_text_of_any_script_is_kept(
    opened: Opened,
) -> None:
    reasons = "\u0623\u0645\u064a\u0631\u0629\u200f:\n\tI'd rather \U0001f3ca\u200d\u2640\ufe0f"
    opened.say(opened.grace, "dissent.recorded", {"decision": opened.decision, "reasons": reasons})
    proposal = str(uuid.uuid4())
    made = {"decision": opened.decision, "proposal": proposal, "title": "Home", "risks": ""}
    opened.say(opened.lead, "proposal.made", made)
    ledger = opened.world.ledger
    assert isinstance(ledger, DecisionRecord)
    dissent = ledger.case(opened.case).decisions[opened.decision].dissents[0]
    assert ledger.case(opened.case).entries[dissent].body.reasons == reasons


class Unchecked(DecisionRecord):
    """A decision record as it was before text was checked, on the same tables: it stores
    what the check now refuses, as an older version of the ledger did."""

    name = "DecisionRecord"

    def _admit(
        self,
        stream: Stream,
        submission: Submission,
        signer: Ed25519PublicKey,
        directory: Directory,
        recorded_at: str,
    ) -> None:
        if isinstance(stream, Case):
            admit(stream, submission.statement, directory, recorded_at)
        else:
            Ledger._admit(self, stream, submission, signer, directory, recorded_at)
