from api.tokens import Scope
from tests.api.conftest import Served


def test_worked_case_over_http(served: Served) -> None:
    played = served.play_worked_case()
    reviewer = served.reviewer()
    with served.client(served.token(reviewer, Scope.REVIEWER)) as client:
        plan = client.plan(played.case)
        assert plan.case == played.case
        assert len(client.audit(played.case)) == 25
        trace = client.trace(played.case, played.decision)
        assert trace.decision.id == played.decision
