"""The follower keeps projections exactly once: live equals a rebuild, on each store."""

from __future__ import annotations

import uuid

import pytest

from ledger.author import Author
from ledger.errors import StatementConflict
from tests.domain.conftest import play_worked_case
from tests.projections.conftest import Projected, dump


def test_projections_kept_live_equal_a_rebuild_from_scratch(projected: Projected) -> None:
    # Follow after every single append, as a live server would.
    projected.world.ledger.on_append(projected.follower.run_once)
    worked = play_worked_case(projected.world)
    live = dump(projected.database)

    rebuilt = projected.follower.rebuild()

    assert rebuilt == projected.world.ledger.size()
    assert dump(projected.database) == live
    plan = projected.queries.plan(worked.played.case)
    assert plan is not None and plan.decisions[0].status == "agreed"


def test_the_worked_case_reads_back_as_plan_audit_trace_and_register(
    projected: Projected,
) -> None:
    worked = play_worked_case(projected.world)
    projected.follower.catch_up()
    played, queries = worked.played, projected.queries
    directory = projected.world.ledger.directory()

    plan = queries.plan(played.case)
    assert plan is not None
    (decision,) = plan.decisions
    assert (
        decision.status == "agreed"
        and decision.agreed_at == played.receipts["agree:daniel"].recorded_at
    )
    assert [p.title for p in decision.proposals if p.hash == decision.agreed_hash] == [
        "One clinic session plus a daily home programme"
    ]
    assert decision.child_views[0].feedback[0].influence.startswith("You said clinic is tiring")
    assert decision.missing == [] and decision.still_to_agree == []

    audit = queries.audit(played.case, directory)
    assert [row.seq for row in audit] == list(range(1, len(played.receipts) + 1))
    assert all(row.signature == "valid" for row in audit)
    corrected = next(row for row in audit if row.hash == played.hash("action"))
    assert corrected.corrected_by == [played.hash("correction")]
    view = next(row for row in audit if row.kind == "child_view.recorded")
    assert view.on_behalf_of is not None and view.on_behalf_of.name == "Amara Okoye"
    assert view.by.name == "Priya Shah" and view.role == "advocate"

    trace = queries.trace(played.case, played.decision)
    assert trace is not None
    assert trace.steps[0].kind == "decision.opened"
    assert "agreement.given" in {s.kind for s in trace.steps}

    register = queries.register(played.case)
    assert register is not None
    sharing = next(c for c in register.consents if c.hash == played.hash("consent:sharing"))
    assert sharing.withdrawn_at == played.receipts["withdraw"].recorded_at

    grace = worked.authors["grace"].person
    assert {row.kind for row in queries.contributions(grace, directory)} == {
        "opinion.given",
        "consent.given",
        "agreement.given",
    }


def test_a_key_compromised_later_shows_in_the_audit_without_rebuilding(
    projected: Projected,
) -> None:
    worked = play_worked_case(projected.world)
    projected.follower.catch_up()
    sam = worked.authors["sam"]
    first = min(
        r.recorded_at
        for r in projected.queries.audit(worked.played.case, projected.world.ledger.directory())
        if r.by.id == sam.person
    )

    projected.world.authority.revoke(sam.kid, "stolen", compromised_since=first)
    projected.follower.catch_up()

    rows = projected.queries.audit(worked.played.case, projected.world.ledger.directory())
    assert {r.signature.startswith("key") for r in rows if r.by.id == sam.person} == {True}
    assert {r.signature for r in rows if r.by.id != sam.person} == {"valid"}


def test_read_your_writes_waits_until_the_projection_has_the_entry(projected: Projected) -> None:
    projected.follower.start(poll=0.05)
    try:
        worked = play_worked_case(projected.world)
        lead = worked.authors["okafor"]
        accepted = projected.world.ledger.submit(
            lead.submission(
                worked.played.case,
                "review.scheduled",
                {"decision": worked.played.decision, "due": "2027-05-01"},
            )
        )
        assert accepted.notification_id is not None

        assert projected.follower.wait_for(accepted.notification_id, timeout=10)

        plan = projected.queries.plan(worked.played.case)
        assert plan is not None and plan.version == accepted.receipt.seq
    finally:
        projected.follower.stop()


def test_wait_for_gives_up_after_its_bound(projected: Projected) -> None:
    assert not projected.follower.wait_for(10**9, timeout=0.05)


def test_only_one_follower_leads_at_a_time(projected: Projected) -> None:
    first, second = (
        projected.follower,
        type(projected.follower)(projected.world.ledger, projected.database),
    )
    assert first.try_lead()
    try:
        assert not second.try_lead()
    finally:
        first.resign()
    assert second.try_lead()
    second.resign()


def test_a_revisited_decision_shows_superseded_in_its_trace_when_followed_live(
    projected: Projected,
) -> None:
    worked = play_worked_case(projected.world)
    projected.follower.catch_up()
    follower = type(projected.follower)(projected.world.ledger, projected.database, batch_size=1)
    okafor, grace = worked.authors["okafor"], worked.authors["grace"]
    case, earlier = worked.played.case, worked.played.decision
    ledger = projected.world.ledger
    again = str(uuid.uuid4())

    def say(author: Author, kind: str, body: dict[str, object]) -> str:
        receipt = ledger.submit(author.submission(case, kind, body)).receipt
        follower.catch_up()
        return receipt.hash

    say(
        okafor,
        "decision.opened",
        {
            "decision": again,
            "question": "Swimming instead?",
            "required": [okafor.person],
            "revisits": earlier,
        },
    )
    first = str(uuid.uuid4())
    swim = say(okafor, "proposal.made", {"decision": again, "proposal": first, "title": "Swim"})
    say(
        okafor,
        "proposal.made",
        {
            "decision": again,
            "proposal": str(uuid.uuid4()),
            "title": "Keep the plan",
            "do_nothing": True,
        },
    )
    say(okafor, "child_view.not_obtained", {"decision": again, "reason": "Amara is away."})
    say(
        grace,
        "consent.given",
        {
            "decision": again,
            "basis": "parental responsibility",
            "scope": {"type": "treatment", "proposal_hash": swim},
        },
    )
    say(okafor, "agreement.given", {"decision": again, "proposal": first, "proposal_hash": swim})

    trace = projected.queries.trace(case, earlier)
    assert trace is not None
    assert trace.decision.status == "superseded" and trace.decision.superseded_by == again
    live = dump(projected.database)
    follower.rebuild()
    assert dump(projected.database) == live


def test_holes_in_notification_ids_leave_audit_positions_dense(
    projected: Projected, store_url: str
) -> None:
    ledger = projected.world.ledger
    worked = play_worked_case(projected.world)
    grace = worked.authors["grace"]
    statement_id = str(uuid.uuid4())
    # Same id, different body: the entry row is inserted, then the claim collides and the
    # whole transaction rolls back (on PostgreSQL this burns notification ids: a hole).
    first = ledger.submit(
        grace.sign(
            grace.statement(
                worked.played.case,
                "preferences.stated",
                {"language": "English"},
                statement_id=statement_id,
            )
        )
    )
    with pytest.raises(StatementConflict):
        ledger.submit(
            grace.sign(
                grace.statement(
                    worked.played.case,
                    "preferences.stated",
                    {"language": "French"},
                    statement_id=statement_id,
                )
            )
        )
    last = ledger.submit(grace.submission(worked.played.case, "preferences.stated", {}))
    assert first.notification_id is not None and last.notification_id is not None
    if "postgresql" in store_url:
        assert last.notification_id - first.notification_id > 2, "no hole was made"

    projected.follower.catch_up()

    audit = projected.database.query("SELECT position FROM projection_audit ORDER BY position")
    assert [position for (position,) in audit] == list(range(ledger.size()))
