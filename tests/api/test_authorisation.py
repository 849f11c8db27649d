"""Who may read what: members read their own case, reviewers read every case and every reviewer
read is recorded, services and admins read no case, and a token that is not valid gets a 401.

Amara's worked case is played through the API; a second family (the Adeyemis, with their own
paediatrician) has a case of its own.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from typing import Any

import orjson
import pytest

from api.client import Forbidden, Identity, NotFound, Unauthorized
from api.tokens import Scope, TokenError, revoke
from domain.worked_case import CAST, Played
from ledger.access import READ_TOPIC, ReadRecorded
from ledger.clock import format_recorded
from projections.database import Database
from projections.documents import AccessRow
from projections.queries import Projections
from tests.api.conftest import Served

PROBLEM = "application/problem+json"
VIEWS = ("plan", "audit", "register", "trace")
NAMES = {person.handle: person.name for person in CAST}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def get(url: str, path: str, authorization: str | None = None) -> Answer:
    """GET with the Authorization header given verbatim (or none)."""
    request = urllib.request.Request(url + path)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def bearer(token: str) -> str:
    return f"Bearer {token}"


def token_id(token: str) -> str:
    """The id part of `accord_<id>_<secret>`."""
    prefix, ident, _secret = token.split("_", 2)
    assert prefix == "accord"
    return ident


def view_path(view: str, case: str, decision: str) -> str:
    if view == "trace":
        return f"/v1/cases/{case}/decisions/{decision}/trace"
    return f"/v1/cases/{case}/{view}"


def what(view: str, decision: str) -> str:
    """How the access log names a read of that view."""
    return f"trace {decision}" if view == "trace" else view


@dataclass
class Cases:
    """Amara's worked case and the Adeyemis' case, served."""

    served: Served
    amara: Played
    other: str  # the Adeyemis' case
    other_decision: str

    def person(self, handle: str) -> Identity:
        return self.served.people[NAMES[handle]]

    def member_token(self, handle: str) -> str:
        return self.served.token(self.person(handle), Scope.MEMBER)

    def admin_token(self) -> str:
        return self.served.token(self.served.administrator("Clinic Admin"), Scope.ADMIN)

    def path(self, view: str) -> str:
        return view_path(view, self.amara.case, self.amara.decision)

    def other_path(self, view: str) -> str:
        return view_path(view, self.other, self.other_decision)

    def reads(self) -> list[ReadRecorded]:
        """Reads recorded in the store, in order (written before the data is served)."""
        records = self.served.record.read_records([READ_TOPIC])
        return [r for r in records if isinstance(r, ReadRecorded)]

    def access_log(self, admin: str, count: int, case: str | None = None) -> list[AccessRow]:
        """The access log once it shows at least `count` rows (projected asynchronously)."""
        query = f"?case={case}" if case else ""
        deadline = time.monotonic() + 10
        while True:
            with self.served.client(admin) as client:
                rows = client.access_log(case) if case else client.access_log()
            if len(rows) >= count or time.monotonic() > deadline:
                assert len(rows) >= count, f"/v1/access{query} shows {len(rows)} of {count} reads"
                return rows
            time.sleep(0.02)


def open_other_case(served: Served) -> tuple[str, str]:
    """The Adeyemis' case: Dr Bankole leads, Folake is Tobi's mother; one open decision."""
    lead = served.person("Dr Ayo Bankole", "professional", profession="paediatrician")
    child = served.person(
        "Tobi Adeyemi", "child", born=date(datetime.now(UTC).year - 7, 6, 1).isoformat()
    )
    mother = served.person("Folake Adeyemi")
    case, decision = str(uuid.uuid4()), str(uuid.uuid4())
    with served.client() as client:
        for who, kind, body in (
            (
                lead,
                "case.opened",
                {"child": child.person, "title": "Tobi's hearing", "lead": lead.person},
            ),
            (
                lead,
                "participant.joined",
                {"person": mother.person, "role": "parent", "parental_responsibility": True},
            ),
            (
                lead,
                "decision.opened",
                {
                    "decision": decision,
                    "question": "Should Tobi have grommets?",
                    "required": [lead.person, mother.person],
                },
            ),
        ):
            assert client.submit(who.sign(case, kind, body)).created
    return case, decision


@pytest.fixture
def cases(served: Served) -> Cases:
    amara = served.play_worked_case()
    other, other_decision = open_other_case(served)
    return Cases(served, amara, other, other_decision)


def assert_problem(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.headers.get_content_type() == PROBLEM
    problem = answer.json()
    assert isinstance(problem, dict)
    assert problem["code"] == code
    return problem


# -- members ---------------------------------------------------------------------------------


@pytest.mark.parametrize("handle", ["grace", "daniel", "okafor", "sam", "priya"])
def test_a_member_reads_their_own_case_and_the_reads_are_not_recorded(
    cases: Cases, handle: str
) -> None:
    token = cases.member_token(handle)

    answers = {view: get(cases.served.url, cases.path(view), bearer(token)) for view in VIEWS}

    for view, answer in answers.items():
        assert answer.status == 200, (view, answer.body)
        assert cases.amara.case in answer.body.decode(), view
    assert cases.reads() == []


@pytest.mark.parametrize("view", VIEWS)
def test_a_parent_of_one_case_cannot_read_another(cases: Cases, view: str) -> None:
    grace = cases.member_token("grace")
    folake = cases.served.token(cases.served.people["Folake Adeyemi"], Scope.MEMBER)

    assert_problem(get(cases.served.url, cases.other_path(view), bearer(grace)), 403, "forbidden")
    assert_problem(get(cases.served.url, cases.path(view), bearer(folake)), 403, "forbidden")
    assert get(cases.served.url, cases.other_path(view), bearer(folake)).status == 200


def test_a_member_cannot_tell_whether_a_case_they_do_not_belong_to_exists(cases: Cases) -> None:
    grace = bearer(cases.member_token("grace"))
    nowhere = str(uuid.uuid4())

    existing = assert_problem(
        get(cases.served.url, cases.other_path("plan"), grace), 403, "forbidden"
    )
    missing = assert_problem(
        get(cases.served.url, f"/v1/cases/{nowhere}/plan", grace), 403, "forbidden"
    )

    assert existing["detail"] == missing["detail"]


@pytest.mark.parametrize("view", VIEWS)
def test_an_external_partner_cannot_read_their_case_at_all(cases: Cases, view: str) -> None:
    school = cases.member_token("school")

    answer = get(cases.served.url, cases.path(view), bearer(school))

    assert_problem(answer, 403, "forbidden")


@pytest.mark.parametrize("view", VIEWS)
def test_a_member_who_left_the_case_can_no_longer_read_it(cases: Cases, view: str) -> None:
    daniel = bearer(cases.member_token("daniel"))
    assert get(cases.served.url, cases.path(view), daniel).status == 200
    okafor = cases.person("okafor")
    body = {"person": cases.person("daniel").person, "reason": "Moved abroad."}
    with cases.served.client() as client:
        assert client.submit(okafor.sign(cases.amara.case, "participant.left", body)).created

    answer = get(cases.served.url, cases.path(view), daniel)

    assert_problem(answer, 403, "forbidden")
    assert (
        get(cases.served.url, cases.path(view), bearer(cases.member_token("grace"))).status == 200
    )


def test_the_sdk_raises_forbidden_for_another_familys_case(cases: Cases) -> None:
    client = cases.served.client(cases.member_token("grace"))
    with client, pytest.raises(Forbidden) as raised:
        client.plan(cases.other)

    assert (raised.value.status, raised.value.code) == (403, "forbidden")


# -- reviewers -------------------------------------------------------------------------------


@pytest.mark.parametrize("view", VIEWS)
def test_a_reviewer_reads_any_case_and_each_read_is_recorded_before_it_is_served(
    cases: Cases, view: str
) -> None:
    reviewer = cases.served.reviewer()
    token = cases.served.token(reviewer, Scope.REVIEWER)

    for path in (cases.path(view), cases.other_path(view)):
        assert get(cases.served.url, path, bearer(token)).status == 200

    # No waiting: the reads were in the store before the answers were sent.
    reads = cases.reads()
    assert [(r.person, r.token, r.stream, r.what) for r in reads] == [
        (reviewer.person, token_id(token), cases.amara.case, what(view, cases.amara.decision)),
        (reviewer.person, token_id(token), cases.other, what(view, cases.other_decision)),
    ]


def test_the_access_log_shows_who_read_which_case_when_and_with_which_token(
    cases: Cases,
) -> None:
    reviewer = cases.served.reviewer()
    token = cases.served.token(reviewer, Scope.REVIEWER)
    admin = cases.admin_token()
    started = format_recorded(datetime.now(UTC))

    for view in VIEWS:
        assert get(cases.served.url, cases.path(view), bearer(token)).status == 200
    assert get(cases.served.url, cases.other_path("plan"), bearer(token)).status == 200
    finished = format_recorded(datetime.now(UTC) + timedelta(seconds=1))

    everything = cases.access_log(admin, 5)
    amara = cases.access_log(admin, 4, cases.amara.case)

    assert [row.what for row in amara] == [what(v, cases.amara.decision) for v in VIEWS]
    assert [row.stream for row in everything] == [cases.amara.case] * 4 + [cases.other]
    for row in everything:
        assert (row.by.id, row.by.name) == (reviewer.person, "Jo Marsh")
        assert row.token == token_id(token)
        assert started <= row.at <= finished
    assert [row.at for row in everything] == sorted(row.at for row in everything)
    assert [row.position for row in everything] == sorted({row.position for row in everything})
    assert amara == everything[:4]
    database = Database(cases.served.record.store)
    try:
        assert Projections(database).access(cases.amara.case) == amara  # the same, in-process
    finally:
        database.close()


def test_members_reads_never_reach_the_access_log_but_reviewers_do(cases: Cases) -> None:
    grace = bearer(cases.member_token("grace"))
    reviewer = cases.served.reviewer()
    token = cases.served.token(reviewer, Scope.REVIEWER)
    for view in VIEWS:
        assert get(cases.served.url, cases.path(view), grace).status == 200

    # The log is projected in order, so once the reviewer's later read shows, any earlier
    # member read would show too.
    assert get(cases.served.url, cases.path("plan"), bearer(token)).status == 200
    rows = cases.access_log(cases.admin_token(), 1)

    assert [(row.by.id, row.what) for row in rows] == [(reviewer.person, "plan")]


def test_a_reviewer_asking_for_a_case_that_does_not_exist_gets_404_and_nothing_is_recorded(
    cases: Cases,
) -> None:
    token = cases.served.token(cases.served.reviewer(), Scope.REVIEWER)

    answer = get(cases.served.url, f"/v1/cases/{uuid.uuid4()}/plan", bearer(token))

    assert_problem(answer, 404, "not_found")
    assert cases.reads() == []


def test_a_revoked_reviewer_token_stops_reading_and_its_earlier_reads_stay_logged(
    cases: Cases,
) -> None:
    reviewer = cases.served.reviewer()
    token = cases.served.token(reviewer, Scope.REVIEWER)
    assert get(cases.served.url, cases.path("plan"), bearer(token)).status == 200

    revoke(cases.served.record, token_id(token))
    answer = get(cases.served.url, cases.path("audit"), bearer(token))

    assert_problem(answer, 401, "unauthorized")
    assert [r.what for r in cases.reads()] == ["plan"]
    rows = cases.access_log(cases.admin_token(), 1)
    assert [(row.token, row.what) for row in rows] == [(token_id(token), "plan")]


# -- tokens that are not valid ---------------------------------------------------------------


def _missing(cases: Cases) -> str | None:
    return None


def _empty_bearer(cases: Cases) -> str | None:
    return "Bearer "


def _basic_scheme(cases: Cases) -> str | None:
    return "Basic Z3JhY2U6c2VjcmV0"


def _not_a_token(cases: Cases) -> str | None:
    return "Bearer let-me-in"


def _id_that_is_not_hex(cases: Cases) -> str | None:
    return "Bearer accord_zzzz_secret"


def _unknown_id(cases: Cases) -> str | None:
    return bearer(f"accord_{uuid.uuid4().hex}_{'A' * 43}")


def _wrong_secret(cases: Cases) -> str | None:
    token = cases.member_token("grace")
    return bearer(f"accord_{token_id(token)}_{'A' * 43}")


def _token_without_bearer(cases: Cases) -> str | None:
    return cases.member_token("grace")


def _revoked(cases: Cases) -> str | None:
    token = cases.member_token("grace")
    revoke(cases.served.record, token_id(token))
    return bearer(token)


INVALID: list[Callable[[Cases], str | None]] = [
    _missing,
    _empty_bearer,
    _basic_scheme,
    _not_a_token,
    _id_that_is_not_hex,
    _unknown_id,
    _wrong_secret,
    _token_without_bearer,
    _revoked,
]


@pytest.mark.parametrize("header", INVALID, ids=[f.__name__.strip("_") for f in INVALID])
def test_a_missing_or_invalid_token_gets_401_with_a_bearer_challenge(
    cases: Cases, header: Callable[[Cases], str | None]
) -> None:
    authorization = header(cases)

    for path in [*(cases.path(view) for view in VIEWS), "/v1/access"]:
        answer = get(cases.served.url, path, authorization)

        assert_problem(answer, 401, "unauthorized")
        assert (answer.headers.get("WWW-Authenticate") or "").startswith("Bearer "), path
    assert cases.reads() == []


def test_the_sdk_raises_unauthorized_for_a_revoked_token(cases: Cases) -> None:
    header = _revoked(cases)
    assert header is not None
    client = cases.served.client(header.removeprefix("Bearer "))
    with client, pytest.raises(Unauthorized) as raised:
        client.plan(cases.amara.case)

    assert (raised.value.status, raised.value.code) == (401, "unauthorized")


# -- tokens of the wrong scope ---------------------------------------------------------------


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("scope", [Scope.SERVICE, Scope.ADMIN])
def test_service_and_admin_tokens_read_no_case(cases: Cases, scope: Scope, view: str) -> None:
    # Even when the person behind an admin token is a member of the case.
    if scope is Scope.ADMIN:
        cases.served.authority.appoint_administrator(cases.person("okafor").person)
        person = cases.person("okafor")
    else:
        person = cases.served.service("Records Service")
    token = cases.served.token(person, scope)

    answer = get(cases.served.url, cases.path(view), bearer(token))

    assert_problem(answer, 403, "forbidden")
    assert cases.reads() == []


def test_a_service_token_limited_to_the_school_reads_no_case(cases: Cases) -> None:
    school = cases.served.service("School events")
    token = cases.served.token(school, Scope.SERVICE, organisation=cases.amara.school)

    assert_problem(get(cases.served.url, cases.path("plan"), bearer(token)), 403, "forbidden")


@pytest.mark.parametrize("scope", [Scope.MEMBER, Scope.REVIEWER, Scope.SERVICE])
def test_only_an_admin_token_reads_the_access_log(cases: Cases, scope: Scope) -> None:
    person = {
        Scope.REVIEWER: cases.served.reviewer(),
        Scope.SERVICE: cases.served.service(),
    }.get(scope, cases.person("okafor"))
    token = cases.served.token(person, scope)

    assert_problem(get(cases.served.url, "/v1/access", bearer(token)), 403, "forbidden")
    assert get(cases.served.url, "/v1/access", bearer(cases.admin_token())).status == 200


def test_the_access_log_refuses_a_case_that_is_not_a_uuid(cases: Cases) -> None:
    admin = bearer(cases.admin_token())

    assert_problem(get(cases.served.url, "/v1/access?case=amara", admin), 400, "malformed")


def test_a_reviewer_token_cannot_be_issued_to_someone_who_is_not_a_reviewer(
    cases: Cases,
) -> None:
    with pytest.raises(TokenError):
        cases.served.token(cases.person("okafor"), Scope.REVIEWER)


def test_the_sdk_raises_not_found_for_a_reviewer_asking_for_no_case(cases: Cases) -> None:
    token = cases.served.token(cases.served.reviewer(), Scope.REVIEWER)
    with cases.served.client(token) as client, pytest.raises(NotFound):
        client.plan(str(uuid.uuid4()))


# -- edges -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_the_bearer_scheme_is_matched_without_regard_to_case(cases: Cases, scheme: str) -> None:
    # RFC 9110 §11.1: the authentication scheme is a case-insensitive token.
    token = cases.member_token("grace")

    answer = get(cases.served.url, cases.path("plan"), f"{scheme} {token}")

    assert answer.status == 200, answer.body


@pytest.mark.parametrize(
    "path",
    [
        "/v1/cases/not-a-case/plan",
        "/v1/cases/{case}/decisions/not-a-decision/trace",
        "/v1/cases/not-a-case/decisions/{decision}/trace",
    ],
)
def test_a_request_without_a_token_is_refused_before_its_ids_are_looked_at(
    cases: Cases, path: str
) -> None:
    path = path.format(case=cases.amara.case, decision=cases.amara.decision)

    answer = get(cases.served.url, path)

    assert_problem(answer, 401, "unauthorized")


def test_a_member_cannot_reach_another_cases_decision_through_their_own_case(
    cases: Cases,
) -> None:
    grace = bearer(cases.member_token("grace"))
    path = view_path("trace", cases.amara.case, cases.other_decision)

    answer = get(cases.served.url, path, grace)

    assert_problem(answer, 404, "not_found")
    assert b"grommets" not in answer.body
