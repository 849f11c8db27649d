"""Group commit on a decision record: a batch of case statements is judged by the rules as if
each statement were submitted alone, in the order given."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.record import DecisionRecord
from ledger.author import Author
from ledger.ledger import Accepted
from ledger.statement import parse_submission
from tests.twins import Twins, one_by_one, open_twins, outcome

OPENING = (
    "open",
    "join sam",
    "join grace",
    "decision",
    "proposal by sam",
    "proposal by lead",
    "grace's preferences",
)


@pytest.fixture
def twins(store_url: str, tmp_path: Path) -> Iterator[Twins]:
    with open_twins(store_url, tmp_path, DecisionRecord) as opened:
        yield opened


def opening(twins: Twins) -> tuple[str, dict[str, bytes]]:
    """A new case and the statements that open it, named as in `OPENING`, in an order in which
    each is allowed: the lead opens it, adds a clinician and a parent, and opens a decision on
    which the clinician and the lead propose; the parent states her preferences."""
    lead = twins.person("Dr Okafor", "professional", profession="paediatrician")
    sam = twins.person("Sam", "professional", profession="physiotherapist")
    grace = twins.person("Grace")
    child = twins.person("Amara", "child", born="2016-05-01")
    case, decision = str(uuid.uuid4()), str(uuid.uuid4())
    submissions = {
        "open": lead.submission(
            case, "case.opened", {"child": child.person, "title": "Physio", "lead": lead.person}
        ),
        "join sam": lead.submission(
            case, "participant.joined", {"person": sam.person, "role": "clinician"}
        ),
        "join grace": lead.submission(
            case,
            "participant.joined",
            {"person": grace.person, "role": "parent", "parental_responsibility": True},
        ),
        "decision": lead.submission(
            case,
            "decision.opened",
            {
                "decision": decision,
                "question": "How should the physiotherapy continue?",
                "required": [lead.person, grace.person],
            },
        ),
        "proposal by sam": proposal(sam, case, decision, "A daily home programme"),
        "proposal by lead": proposal(lead, case, decision, "Twice-weekly clinic sessions"),
        "grace's preferences": grace.submission(
            case, "preferences.stated", {"language": "English"}
        ),
    }
    assert tuple(submissions) == OPENING
    return case, submissions


def proposal(author: Author, case: str, decision: str, title: str) -> bytes:
    body = {"decision": decision, "proposal": str(uuid.uuid4()), "title": title}
    return author.submission(case, "proposal.made", body)


def test_a_case_opened_in_one_batch_is_the_case_opened_one_by_one(twins: Twins) -> None:
    case, submissions = opening(twins)
    batch = list(submissions.values())
    appends: list[None] = []
    twins.batch.on_append(lambda: appends.append(None))

    got = twins.batch.submit_many(batch)
    want = one_by_one(twins.single, batch)

    assert [outcome(answer) for answer in got] == [
        ("accepted", True, case, seq) for seq in range(1, len(batch) + 1)
    ]
    assert [outcome(answer) for answer in want] == [outcome(answer) for answer in got]
    assert len(appends) == 1  # each rule judged on the case with the batch's entries before it
    for record in twins.ledgers:
        entries = list(record.entries(uuid.UUID(case)))
        assert [e.statement_bytes for e in entries] == [
            parse_submission(data).statement_bytes for data in batch
        ]
        assert record.check_stream(uuid.UUID(case)) == len(batch)


def test_a_statement_the_case_does_not_allow_yet_is_refused_in_a_batch(twins: Twins) -> None:
    # Adding Sam before the case is opened is refused by submit (R1); in a batch, the opening
    # that comes after it must not make it acceptable.
    case, submissions = opening(twins)

    answers = twins.batch.submit_many([submissions["join sam"], submissions["open"]])

    assert [outcome(answer) for answer in answers] == [
        ("rejected", "not_a_member"),
        ("accepted", True, case, 1),
    ]
    assert twins.batch.check_stream(uuid.UUID(case)) == 1


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(names=st.lists(st.sampled_from(OPENING), min_size=1, max_size=8))
@example(names=list(OPENING))
@example(names=["join sam", "open"])
def test_case_statements_in_any_order_are_judged_as_one_by_one(
    twins: Twins, names: list[str]
) -> None:
    case, submissions = opening(twins)
    batch = [submissions[name] for name in names]

    got = twins.batch.submit_many(batch)
    want = one_by_one(twins.single, batch)

    assert list(zip(names, map(outcome, got), strict=True)) == list(
        zip(names, map(outcome, want), strict=True)
    )
    stored = [
        [e.statement_bytes for e in record.entries(uuid.UUID(case))] for record in twins.ledgers
    ]
    assert stored[0] == stored[1]
    created = sum(isinstance(a, Accepted) and a.created for a in got)
    assert twins.batch.check_stream(uuid.UUID(case)) == created
