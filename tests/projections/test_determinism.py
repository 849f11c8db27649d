"""On random ledgers, projections kept live while appending equal a full rebuild."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant

from projections.database import Database
from projections.follower import Follower
from tests.conftest import require_postgres
from tests.domain.test_stateful import CaseMachine, PostgresCase, SQLiteCase
from tests.projections.conftest import dump


class Projecting(CaseMachine):
    """The random case machine, with a follower applying each step as it happens."""

    def __init__(self) -> None:
        super().__init__()
        self.database = Database(self.world.ledger.store)
        self.follower = Follower(self.world.ledger, self.database, batch_size=7)

    @invariant()
    def follow_live(self) -> None:
        self.follower.catch_up()

    def teardown(self) -> None:
        try:
            live = dump(self.database)
            self.follower.rebuild()
            assert dump(self.database) == live, "live projections differ from a rebuild"
        finally:
            self.database.close()
            super().teardown()


class ProjectingSQLite(Projecting, SQLiteCase):
    pass


class ProjectingPostgres(Projecting, PostgresCase):
    pass


_BASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
TestLiveEqualsRebuildOnSQLite = ProjectingSQLite.TestCase
TestLiveEqualsRebuildOnSQLite.settings = settings(_BASE, max_examples=15, stateful_step_count=40)
TestLiveEqualsRebuildOnPostgres = ProjectingPostgres.TestCase
TestLiveEqualsRebuildOnPostgres.settings = settings(_BASE, max_examples=4, stateful_step_count=40)


@pytest.fixture(autouse=True)
def _postgres_when_needed(request: pytest.FixtureRequest) -> None:
    if request.cls is TestLiveEqualsRebuildOnPostgres:
        require_postgres()
