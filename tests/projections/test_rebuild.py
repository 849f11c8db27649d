"""Catching up and rebuilding read the log straight from the event table, in large batches, and
write each batch on a thread of their own while they fold the next: what they leave must be
exactly what following the log one entry at a time leaves."""

from __future__ import annotations

import gc
import uuid
from typing import Any

import pytest

from ledger.access import record_read
from projections import follower as following
from projections.database import Cursor
from projections.follower import Follower
from projections.views import PROJECTIONS, Batch, Projection
from tests.domain.conftest import WorkedCase, play_worked_case
from tests.projections.conftest import Projected, dump


def follow_each_append(projected: Projected) -> Follower:
    """A follower that applies each entry and record as it is appended, one batch each, as a
    live server does (what was appended before it started, it applies first)."""
    live = Follower(projected.world.ledger, projected.database, batch_size=1)
    live.catch_up()
    projected.world.ledger.on_append(live.run_once)
    return live


def hash_index(projected: Projected) -> list[Any]:
    if projected.database.postgres:
        sql = "SELECT indexname FROM pg_indexes WHERE indexname = 'projection_audit_hash'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE name = 'projection_audit_hash'"
    return projected.database.query(sql)


def test_a_rebuild_in_small_batches_over_more_cases_than_are_cached_equals_following_live(
    projected: Projected, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny pages, batches and cache: every batch spans pages, stops early at the cache's
    # size, meets directory changes half way, and cases come back after being evicted.
    monkeypatch.setattr(following, "_PAGE", 3)
    monkeypatch.setattr(following, "_REBUILD_BATCH", 7)
    live_follower = follow_each_append(projected)
    cases = [play_worked_case(projected.world) for _ in range(3)]
    for worked in cases:  # back to the first cases, long after they were evicted
        say_preferences(projected, worked, "Spanish")
    assert live_follower.catch_up() == 0, "the live follower fell behind"
    live = dump(projected.database)
    follower = Follower(projected.world.ledger, projected.database, cached_cases=2)

    rebuilt = follower.rebuild()

    assert rebuilt == projected.world.ledger.size()
    assert dump(projected.database) == live
    for worked in cases:
        plan = projected.queries.plan(worked.played.case)
        assert plan is not None and plan.decisions[0].status == "agreed"


def test_corrections_of_an_entry_written_in_an_earlier_batch_all_reach_its_audit_row(
    projected: Projected,
) -> None:
    worked = play_worked_case(projected.world)
    projected.follower.catch_up()
    sam, target = worked.authors["sam"], worked.played.hash("action")
    corrections = [worked.played.hash("correction")]
    for n in (1, 2):  # both in the next batch: one read of the stored row must see the other
        corrections.append(
            projected.world.ledger.submit(
                sam.submission(
                    worked.played.case,
                    "entry.corrected",
                    {"entry": target, "correction": f"Correction {n}.", "reason": "Again."},
                )
            ).receipt.hash
        )

    projected.follower.catch_up()

    (row,) = [
        r
        for r in projected.queries.audit(worked.played.case, projected.world.ledger.directory())
        if r.hash == target
    ]
    assert row.corrected_by == corrections
    live = dump(projected.database)
    projected.follower.rebuild()
    assert dump(projected.database) == live


def test_recorded_reads_are_projected_alike_by_following_and_by_rebuilding(
    projected: Projected,
) -> None:
    live_follower = follow_each_append(projected)
    worked = play_worked_case(projected.world)
    reader = worked.authors["okafor"].person
    for what in ("plan", "audit"):
        record_read(projected.world.ledger, reader, str(uuid.uuid4()), worked.played.case, what)
    say_preferences(projected, worked, "Welsh")
    assert live_follower.catch_up() == 0, "the live follower fell behind"
    live = dump(projected.database)

    projected.follower.rebuild()

    assert dump(projected.database) == live
    reads = projected.queries.access(worked.played.case)
    assert [(r.what, r.by.id) for r in reads] == [("plan", reader), ("audit", reader)]


def test_a_rebuild_puts_back_the_audit_hash_index_and_the_garbage_collector(
    projected: Projected,
) -> None:
    play_worked_case(projected.world)
    assert hash_index(projected) and gc.isenabled()

    projected.follower.rebuild()

    assert hash_index(projected) and gc.isenabled()


class Refused(Projection):
    """A projection whose writes the database refuses (its table does not exist)."""

    name = "refused"

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        cursor.execute("INSERT INTO projection_nowhere (n) VALUES (?)", (1,))


def test_a_batch_the_database_refuses_stops_catching_up_and_nothing_after_it_is_written(
    projected: Projected,
) -> None:
    play_worked_case(projected.world)
    refused = Refused()
    follower = Follower(
        projected.world.ledger, projected.database, [*PROJECTIONS, refused], batch_size=5
    )

    with pytest.raises(Exception, match="projection_nowhere"):
        follower.catch_up()
    assert {nid for nid, _ in follower.tracking().values()} == {0}

    # The same follower, its cached cases now ahead of what was written, starts over cleanly.
    follower.projections.remove(refused)
    follower.catch_up()
    caught_up = dump(projected.database)
    projected.follower.rebuild()
    assert dump(projected.database) == caught_up


def test_a_failed_rebuild_still_puts_back_the_index_and_the_garbage_collector(
    projected: Projected,
) -> None:
    play_worked_case(projected.world)
    follower = Follower(projected.world.ledger, projected.database, [*PROJECTIONS, Refused()])

    with pytest.raises(Exception, match="projection_nowhere"):
        follower.rebuild()

    assert hash_index(projected) and gc.isenabled()


def say_preferences(projected: Projected, worked: WorkedCase, language: str) -> None:
    grace = worked.authors["grace"]
    body = {"language": language}
    projected.world.ledger.submit(grace.submission(worked.played.case, "preferences.stated", body))


class Overtaken(Follower):
    """A follower that another one overtakes just after it has read where its projections stand
    (as a follower killed mid-commit on PostgreSQL may still commit a moment later)."""

    def __init__(self, projected: Projected, other: Follower, batch_size: int = 1000) -> None:
        super().__init__(projected.world.ledger, projected.database, batch_size=batch_size)
        self.other = other
        self.overtaken = False

    def tracking(self) -> dict[str, tuple[int, int]]:
        tracking = super().tracking()
        if not self.overtaken:
            self.overtaken = True
            self.other.catch_up()
        return tracking


@pytest.mark.parametrize("way", ["catch_up", "run_once"])
def test_a_batch_read_before_another_follower_wrote_is_not_written_twice(
    projected: Projected, way: str
) -> None:
    play_worked_case(projected.world)
    overtaken = Overtaken(projected, projected.follower, batch_size=10)

    getattr(overtaken, way)()
    overtaken.catch_up()

    assert {nid for nid, _ in overtaken.tracking().values()} == {
        max(nid for nid, _ in projected.follower.tracking().values())
    }
    caught_up = dump(projected.database)
    projected.follower.rebuild()
    assert dump(projected.database) == caught_up


def test_a_rebuild_leaves_nothing_that_only_the_cyclic_collector_could_free(
    projected: Projected, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The collector is paused for a rebuild: whatever it alone could free would pile up.
    monkeypatch.setattr(following, "_REBUILD_BATCH", 7)
    play_worked_case(projected.world)
    projected.follower.rebuild()
    gc.collect()

    projected.follower.rebuild()

    assert gc.collect() == 0
