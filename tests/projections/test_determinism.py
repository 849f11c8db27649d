"""On random ledgers, projections kept live while appending equal a full rebuild."""

from __future__ import annotations

from hypothesis.stateful import invariant

from projections.database import Database
from projections.follower import Follower
from tests.domain.test_stateful import CaseMachine, PostgresCase, SQLiteCase, machine_test
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


TestLiveEqualsRebuildOnSQLite = machine_test(ProjectingSQLite, examples=15, steps=40)
TestLiveEqualsRebuildOnPostgres = machine_test(ProjectingPostgres, examples=4, steps=40)
