"""Amara's physiotherapy, end to end through the signed write path, on each store."""

from __future__ import annotations

from domain.bodies import SharingScope
from domain.record import DecisionRecord
from domain.worked_case import SCHOOL, play
from tests.conftest import World, fingerprint
from tests.domain.conftest import play_worked_case


def test_the_worked_case_ends_with_the_home_programme_agreed(record: World) -> None:
    worked = play_worked_case(record)
    played, authors = worked.played, worked.authors
    ledger = record.reopen()
    assert isinstance(ledger, DecisionRecord)
    case = ledger.case(played.case)
    decision = case.decisions[played.decision]

    assert case.status(decision) == "agreed"
    assert decision.agreed_hash == played.hash("proposal:home")
    assert decision.proposals[played.proposals["home"]].title == (
        "One clinic session plus a daily home programme"
    )
    # Who agreed and when: the last agreement (Daniel's) fixes the agreed time.
    assert set(decision.agreements) == {authors[h].person for h in ("okafor", "grace", "daniel")}
    assert decision.agreed_at == played.receipts["agree:daniel"].recorded_at

    (view,) = decision.child_views
    assert view.view == "I like swimming. Clinic is tiring after school."
    assert view.method == "pictures"
    assert view.by == authors["priya"].person and view.on_behalf
    (feedback,) = view.feedback
    assert feedback == played.hash("feedback")

    corrected = played.hash("action")
    assert case.entries[corrected].kind == "action.assigned"  # still there
    assert case.corrections[corrected] == [played.hash("correction")]

    sharing = case.consents[played.hash("consent:sharing")]
    assert sharing.withdrawn_at == played.receipts["withdraw"].recorded_at
    assert isinstance(sharing.scope, SharingScope)
    assert sharing.scope.organisation == played.school == record.organisation(SCHOOL)
    assert case.sharing_consent(played.school, case.recorded_at) is None
    assert case.treatment_consent(played.hash("proposal:home"), case.recorded_at) is not None
    assert ledger.check_stream(case.id) == len(played.receipts)


def test_playing_the_worked_case_again_stores_nothing_new(record: World) -> None:
    worked = play_worked_case(record)
    before = fingerprint(record.ledger)

    again = play(
        worked.played.case,
        worked.authors,
        lambda data: record.ledger.submit(data).receipt,
        worked.start,
        worked.played.school,
    )

    assert again.receipts == worked.played.receipts
    assert fingerprint(record.ledger) == before
