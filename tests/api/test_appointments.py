"""R19 appointments and registered organisations: who may hold which token, and ending an
appointment ends its tokens at once, whichever process ends it (on each store)."""

from __future__ import annotations

import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import tokens
from api.tokens import Scope, TokenError
from domain.bodies import SharingScope
from domain.worked_case import SCHOOL
from ledger import access
from ledger.errors import NotPermitted
from tests.api.conftest import Served
from tests.api.test_authorisation import assert_problem, bearer, get
from tests.api.test_cli import CLI
from tests.conftest import World, fingerprint


def status_of(served: Served, token: str, path: str) -> int:
    """The HTTP status a GET of `path` with `token` gets; a refusal must be a problem."""
    answer = get(served.url, path, bearer(token))
    if answer.status == 401:
        assert_problem(answer, 401, "unauthorized")
    return answer.status


# -- who may hold which token (library) -------------------------------------------------------


def test_an_admin_token_is_only_for_an_appointed_administrator(served: Served) -> None:
    child = served.person("Kai", "child", born="2017-01-01")
    clerk = served.person("Pat Clerk", "professional")
    for person in (child, clerk):
        with pytest.raises(TokenError, match="not an appointed administrator"):
            served.token(person, Scope.ADMIN)
    with pytest.raises(NotPermitted, match="of kind child"):
        served.authority.appoint_administrator(child.person)
    served.authority.appoint_administrator(clerk.person)
    assert served.token(clerk, Scope.ADMIN).startswith("accord_")


def test_a_reviewer_token_is_only_for_an_appointed_reviewer(served: Served) -> None:
    child = served.person("Kai", "child", born="2017-01-01")
    with pytest.raises(TokenError, match="not an appointed reviewer"):
        served.token(child, Scope.REVIEWER)
    with pytest.raises(NotPermitted, match="of kind child"):
        served.authority.appoint_reviewer(child.person)


def test_service_tokens_only_for_services_and_member_tokens_not_for_them(served: Served) -> None:
    clinician = served.person("Dr Lee", "professional")
    service = served.service()
    with pytest.raises(TokenError, match="service tokens are for services only"):
        served.token(clinician, Scope.SERVICE)
    with pytest.raises(TokenError, match="is a service"):
        served.token(service, Scope.MEMBER)
    assert served.token(service, Scope.SERVICE).startswith("accord_")


def test_a_scoped_service_token_names_a_registered_organisation(served: Served) -> None:
    service = served.service()
    for unregistered in ("Hillside Primary School", str(uuid.uuid4())):
        with pytest.raises(TokenError, match="no organisation"):
            served.token(service, Scope.SERVICE, unregistered)
    school = served.organisation("Hillside Primary School")
    assert served.token(service, Scope.SERVICE, school).startswith("accord_")


def test_removing_someone_not_appointed_is_refused_and_changes_nothing(served: Served) -> None:
    person = served.person("Pat Clerk", "professional")
    before = fingerprint(served.record)
    with pytest.raises(NotPermitted, match="not an appointed reviewer"):
        served.authority.remove_reviewer(person.person, "left")
    with pytest.raises(NotPermitted, match="not an appointed administrator"):
        served.authority.remove_administrator(person.person, "left")
    assert fingerprint(served.record) == before


def test_appointing_twice_is_refused(served: Served) -> None:
    reviewer = served.reviewer()
    with pytest.raises(NotPermitted, match="already an appointed reviewer"):
        served.authority.appoint_reviewer(reviewer.person)


# -- ending an appointment ends its tokens ----------------------------------------------------


def test_removing_a_reviewer_ends_their_token_at_once(served: Served) -> None:
    played = served.play_worked_case()
    reviewer = served.reviewer()
    token = served.token(reviewer, Scope.REVIEWER)
    plan = f"/v1/cases/{played.case}/plan"
    assert status_of(served, token, plan) == 200

    served.authority.remove_reviewer(reviewer.person, "left the safeguarding team")

    assert status_of(served, token, plan) == 401


def test_removing_an_administrator_in_another_process_ends_their_token_at_once(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = served.administrator()
    token = served.token(admin, Scope.ADMIN)
    assert status_of(served, token, "/v1/directory") == 200
    # The command line opens a ledger of its own: the server's cached directory must notice.
    cli = CLI(served.home.path, served.home.config.store, capsys)
    out = cli.ok("administrator", "remove", "--person", admin.person, "--reason", "moved on")
    assert "no longer work" in out

    assert status_of(served, token, "/v1/directory") == 401
    assert status_of(served, token, "/v1/access") == 401


def test_a_reappointed_reviewer_needs_a_new_token_only_if_it_was_revoked(served: Served) -> None:
    played = served.play_worked_case()
    reviewer = served.reviewer()
    token = served.token(reviewer, Scope.REVIEWER)
    plan = f"/v1/cases/{played.case}/plan"
    served.authority.remove_reviewer(reviewer.person, "on leave")
    assert status_of(served, token, plan) == 401
    served.authority.appoint_reviewer(reviewer.person)
    assert status_of(served, token, plan) == 200


# -- the directory as an administrator sees it -------------------------------------------------


def test_the_directory_shows_appointments_and_organisations(served: Served) -> None:
    school = served.organisation("Hillside Primary School")
    reviewer = served.reviewer()
    served.authority.remove_reviewer(reviewer.person, "left the safeguarding team")
    admin = served.administrator()
    answer = get(served.url, "/v1/directory", bearer(served.token(admin, Scope.ADMIN)))
    assert answer.status == 200
    directory = orjson.loads(answer.body)
    (organisation,) = directory["organisations"]
    assert (organisation["id"], organisation["name"]) == (school, "Hillside Primary School")
    people = {p["id"]: p for p in directory["people"]}
    (term,) = people[reviewer.person]["appointments"]
    assert term["role"] == "reviewer" and term["reason"] == "left the safeguarding team"
    assert "until" in term and "reviewer" not in people[reviewer.person]
    assert people[admin.person]["administrator"] is True
    assert [t["role"] for t in people[admin.person]["appointments"]] == ["administrator"]


# -- the command line ---------------------------------------------------------------------------


def test_the_command_line_registers_and_lists_organisations(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI(served.home.path, served.home.config.store, capsys)
    school = cli.ok("organisation", "add", "--name", "Riverside Academy")
    assert uuid.UUID(school)
    # The same name again is allowed (the ids differ), with a warning naming the first.
    code, again, warning = cli("organisation", "add", "--name", "riverside  ACADEMY")
    assert code == 0 and uuid.UUID(again) and again != school
    assert school in warning and "warning" in warning
    listed = cli.ok("organisation", "list").splitlines()
    assert listed == [f"{school}  Riverside Academy", f"{again}  riverside  ACADEMY"]


def test_the_command_line_issues_tokens_only_as_r19_allows(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI(served.home.path, served.home.config.store, capsys)
    child = cli.ok("person", "add", "--name", "Kai", "--kind", "child", "--born", "2017-01-01")
    clerk = cli.ok("person", "add", "--name", "Pat Clerk", "--kind", "professional")
    feed = cli.ok("person", "add", "--name", "Feed", "--kind", "service")
    before = fingerprint(served.record)
    refusals = [
        (("token", "issue", "--person", child, "--scope", "admin"), "not an appointed admin"),
        (("token", "issue", "--person", clerk, "--scope", "reviewer"), "not an appointed rev"),
        (("token", "issue", "--person", clerk, "--scope", "service"), "for services only"),
        (("token", "issue", "--person", feed, "--scope", "member"), "is a service"),
        (
            ("token", "issue", "--person", feed, "--scope", "service", "--organisation", "School"),
            "no organisation",
        ),
        (("administrator", "appoint", "--person", child), "of kind child"),
        (("reviewer", "remove", "--person", clerk), "not an appointed reviewer"),
        (("administrator", "remove", "--person", clerk), "not an appointed administrator"),
    ]
    for args, said in refusals:
        code, out, err = cli(*args)
        assert (code, out) == (1, ""), args
        assert err.startswith("accord: ") and said in err and "\n" not in err, (args, err)
    assert fingerprint(served.record) == before

    assert "appointed" in cli.ok("administrator", "appoint", "--person", clerk)
    assert cli.ok("token", "issue", "--person", clerk, "--scope", "admin").startswith("accord_")
    assert "appointed" in cli.ok("reviewer", "appoint", "--person", clerk)
    token = cli.ok("token", "issue", "--person", clerk, "--scope", "reviewer")
    assert "no longer work" in cli.ok("reviewer", "remove", "--person", clerk)
    assert status_of(served, token, f"/v1/cases/{uuid.uuid4()}/plan") == 401
    states = {line.split()[1]: line for line in cli.ok("token", "list").splitlines()}
    assert states["reviewer"].endswith("appointment ended")
    assert states["admin"].endswith("active")


# -- a property: tokens follow the appointments, whatever the order of events --------------------

ROLES = {Scope.REVIEWER: "reviewer", Scope.ADMIN: "administrator"}
STEPS = st.lists(
    st.tuples(st.sampled_from(["appoint", "remove"]), st.sampled_from(list(ROLES))), max_size=8
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_reviewer_and_admin_tokens_work_exactly_while_appointed(
    world: World, steps: list[tuple[str, Scope]]
) -> None:
    person = world.authority.register(f"Pat {uuid.uuid4().hex[:6]}", "professional")
    book = access.TokenBook(world.ledger)
    appointed: set[Scope] = set()
    issued: dict[Scope, list[str]] = {scope: [] for scope in ROLES}
    try:
        for action, scope in steps:
            role = ROLES[scope]
            act = getattr(world.authority, f"{action}_{role}")
            args = (person,) if action == "appoint" else (person, "a reason")
            if (action == "appoint") == (scope in appointed):
                with pytest.raises(NotPermitted):
                    act(*args)  # appointing twice, or removing someone not appointed
            else:
                act(*args)
                appointed ^= {scope}
            for each in ROLES:
                if each in appointed:
                    issued[each].append(tokens.issue(world.ledger, person, each))
                else:
                    with pytest.raises(TokenError):
                        tokens.issue(world.ledger, person, each)
                for token in issued[each]:
                    grant = tokens.authenticate(book, f"Bearer {token}")
                    assert (grant is not None) == (each in appointed), (steps, each)
    finally:
        book.close()


def test_views_show_an_organisations_registered_name_beside_its_id(served: Served) -> None:
    played = served.play_worked_case()
    grace = served.people["Grace Okoye"]
    with served.client(served.token(grace, Scope.MEMBER)) as client:
        plan = client.plan(played.case)
        register = client.register(played.case)
    (partner,) = [m for m in plan.members if m.role == "external_partner"]
    assert (partner.organisation, partner.organisation_name) == (played.school, SCHOOL)
    (sharing,) = [c for c in register.consents if isinstance(c.scope, SharingScope)]
    assert isinstance(sharing.scope, SharingScope)
    assert (sharing.scope.organisation, sharing.organisation_name) == (played.school, SCHOOL)
    (share,) = register.shares
    assert (share.recipient, share.recipient_name) == (played.school, SCHOOL)
