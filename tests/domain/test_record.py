"""The decision record when several processes share one store."""

from __future__ import annotations

import uuid

from domain.record import DecisionRecord
from tests.conftest import World


def test_a_statement_judged_on_a_stale_cached_case_is_checked_again_before_refusal(
    record: World,
) -> None:
    lead = record.person("Dr Okafor", "professional")
    child = record.person("Amara", "child")
    grace = record.person("Grace")
    case = str(uuid.uuid4())
    record.ledger.submit(
        lead.submission(
            case, "case.opened", {"child": child.person, "title": "t", "lead": lead.person}
        )
    )
    other = record.reopen()  # another server process on the same store
    assert isinstance(other, DecisionRecord)
    assert grace.person not in other.case(case).members  # it has the case cached now

    record.ledger.submit(
        lead.submission(case, "participant.joined", {"person": grace.person, "role": "parent"})
    )

    accepted = other.submit(grace.submission(case, "preferences.stated", {"language": "Yoruba"}))
    assert accepted.created and accepted.receipt.seq == 3
