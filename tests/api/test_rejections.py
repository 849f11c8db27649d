"""POST /v1/statements over real HTTP: every bad submission gets its problem and leaves no trace.

Each row builds a submission against a small case played through the API (Dr Okafor leads,
Grace is Amara's mother with parental responsibility, one decision with two options), posts it
as raw bytes and checks the HTTP status, the problem's stable `code` (and `rule`), the problem
media type, and that the ledger is exactly as it was before the request.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import msgspec
import orjson
import pytest

from api.client import Client, Identity
from ledger import keys
from ledger.clock import format_recorded
from ledger.receipt import Receipt
from ledger.statement import MAX_SUBMISSION_BYTES
from tests.api.conftest import ORIGIN, Served
from tests.conftest import fingerprint

JSON = "application/json"
PROBLEM = "application/problem+json"
ONE_MIB = 1024 * 1024


# -- talking HTTP without the SDK ------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the server answered: status, headers and body, whatever the status."""

    status: int
    headers: Message
    body: bytes

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 body, after checking the response says it is one."""
        assert self.headers.get_content_type() == PROBLEM, self.headers.get("Content-Type")
        problem = orjson.loads(self.body)
        assert isinstance(problem, dict)
        return problem


def post(url: str, data: bytes | Iterable[bytes], content_type: str | None = JSON) -> Answer:
    """POST raw bytes (an iterable is sent chunked, without a Content-Length)."""
    request = urllib.request.Request(url + "/v1/statements", data=data, method="POST")
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


# -- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    """Amara's case with Dr Okafor (lead) and Grace (parent) and one open decision."""

    served: Served
    client: Client
    people: dict[str, Identity]
    case: str = field(default_factory=lambda: str(uuid.uuid4()))
    decision: str = field(default_factory=lambda: str(uuid.uuid4()))
    proposals: dict[str, Receipt] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def id(self, handle: str) -> str:
        return self.people[handle].person

    def sign(
        self,
        who: str,
        kind: str,
        body: dict[str, Any],
        *,
        for_: str | None = None,
        statement_id: str | None = None,
        at: str | None = None,
        stream: str | None = None,
    ) -> bytes:
        return self.people[who].sign(
            stream or self.case,
            kind,
            body,
            for_=None if for_ is None else self.id(for_),
            statement_id=statement_id,
            at=at,
        )

    def say(self, who: str, kind: str, body: dict[str, Any], *, for_: str | None = None) -> Receipt:
        """Submit through the SDK a statement that must become a new entry."""
        submitted = self.client.submit(self.sign(who, kind, body, for_=for_))
        assert submitted.created
        return submitted.receipt

    def propose(self, key: str, title: str) -> None:
        self.ids[key] = str(uuid.uuid4())
        body = {"decision": self.decision, "proposal": self.ids[key], "title": title}
        self.proposals[key] = self.say("lead", "proposal.made", body)

    def ref(self, key: str = "home") -> dict[str, str]:
        return {
            "decision": self.decision,
            "proposal": self.ids[key],
            "proposal_hash": self.proposals[key].hash,
        }

    def opinion(self, key: str = "home") -> dict[str, Any]:
        return {**self.ref(key), "stance": "support", "reasons": "Amara is happier at home."}

    def agreement(self, key: str = "home") -> dict[str, Any]:
        return {**self.ref(key), "rationale": "A plan Amara can live with."}

    def hear_child(self) -> None:
        body = {
            "decision": self.decision,
            "view": "I like swimming. Clinic is tiring after school.",
            "method": "pictures",
            "support": "Picture cards with Dr Okafor.",
        }
        self.say("lead", "child_view.recorded", body, for_="child")

    def consent(self, key: str = "home") -> None:
        body = {
            "decision": self.decision,
            "basis": "parental responsibility",
            "scope": {"type": "treatment", "proposal_hash": self.proposals[key].hash},
        }
        self.say("grace", "consent.given", body)

    def withdraw(self, key: str) -> None:
        self.say(
            "lead", "proposal.withdrawn", {"decision": self.decision, "proposal": self.ids[key]}
        )


@pytest.fixture
def scene(served: Served) -> Iterator[Scene]:
    nine = date(datetime.now(UTC).year - 9, 3, 14).isoformat()
    people = {
        "lead": served.person("Dr Ngozi Okafor", "professional", profession="paediatrician"),
        "child": served.person("Amara Okoye", "child", born=nine),
        "grace": served.person("Grace Okoye"),
        "olu": served.person("Olu Adeyemi"),  # registered, never joins
    }
    with served.client() as client:
        s = Scene(served, client, people)
        s.say(
            "lead",
            "case.opened",
            {"child": s.id("child"), "title": "Amara's physiotherapy", "lead": s.id("lead")},
        )
        s.say(
            "lead",
            "participant.joined",
            {"person": s.id("grace"), "role": "parent", "parental_responsibility": True},
        )
        s.say(
            "lead",
            "decision.opened",
            {
                "decision": s.decision,
                "question": "How should Amara's physiotherapy continue?",
                "required": [s.id("lead"), s.id("grace")],
            },
        )
        s.propose("clinic", "Twice-weekly clinic sessions")
        s.propose("home", "One clinic session plus a daily home programme")
        yield s


# -- the rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A request body and its media type (None: no Content-Type header of our own)."""

    data: bytes | Iterable[bytes]
    content_type: str | None = JSON


Make = Callable[[Scene], Request]


def envelope(submission: bytes) -> dict[str, Any]:
    decoded = orjson.loads(submission)
    assert isinstance(decoded, dict)
    return decoded


def an_opinion(s: Scene) -> bytes:
    return s.sign("grace", "opinion.given", s.opinion())


def malformed_json(s: Scene) -> Request:
    return Request(b'{"statement": {"ledger": ')


def an_empty_body(s: Scene) -> Request:
    return Request(b"")


def a_json_array(s: Scene) -> Request:
    return Request(b"[]")


def bytes_that_are_not_utf8(s: Scene) -> Request:
    return Request(b'{"statement": {"ledger": "\xff\xfe"}, "sig": "x"}')


def a_plain_text_content_type(s: Scene) -> Request:
    return Request(an_opinion(s), "text/plain")


def a_form_content_type(s: Scene) -> Request:
    return Request(an_opinion(s), "application/x-www-form-urlencoded")


def a_number_where_a_person_belongs(s: Scene) -> Request:
    forged = envelope(an_opinion(s))
    forged["statement"]["by"] = 42
    return Request(orjson.dumps(forged))


def a_signature_that_is_not_base64url(s: Scene) -> Request:
    forged = envelope(an_opinion(s))
    forged["sig"] = "not a signature"
    return Request(orjson.dumps(forged))


def an_unknown_field_in_the_envelope(s: Scene) -> Request:
    forged = envelope(an_opinion(s))
    forged["note"] = "please"
    return Request(orjson.dumps(forged))


def an_unknown_field_in_the_statement(s: Scene) -> Request:
    statement = s.people["grace"].author.statement(s.case, "opinion.given", s.opinion())
    statement["priority"] = "high"
    return Request(s.people["grace"].author.sign(statement))


def an_unknown_field_in_the_body(s: Scene) -> Request:
    return Request(s.sign("grace", "opinion.given", {**s.opinion(), "mood": "cheerful"}))


def a_float_in_the_body(s: Scene) -> Request:
    forged = envelope(an_opinion(s))
    forged["statement"]["body"]["stance"] = 1.5
    return Request(orjson.dumps(forged))


def a_duplicated_key(s: Scene) -> Request:
    signed = an_opinion(s)
    # A reader keeping the first of two values would show "oppose" instead of "support".
    return Request(signed.replace(b'"body":{', b'"body":{"stance":"oppose",', 1))


def a_mebibyte_body(s: Scene) -> Request:
    return Request(s.sign("grace", "opinion.given", {**s.opinion(), "reasons": "x" * ONE_MIB}))


def a_chunked_mebibyte_body(s: Scene) -> Request:
    data = a_mebibyte_body(s).data
    assert isinstance(data, bytes)
    return Request(data[i : i + 65536] for i in range(0, len(data), 65536))


def a_body_one_byte_over_the_limit(s: Scene) -> Request:
    signed = an_opinion(s)
    return Request(signed + b" " * (MAX_SUBMISSION_BYTES + 1 - len(signed)))


def a_bad_signature(s: Scene) -> Request:
    forged = envelope(an_opinion(s))
    forged["statement"]["body"]["reasons"] = "changed after signing"
    return Request(orjson.dumps(forged))


def a_signature_by_an_unknown_key(s: Scene) -> Request:
    stranger = Identity(ORIGIN, s.id("grace"), keys.generate())
    return Request(stranger.sign(s.case, "opinion.given", s.opinion()))


def a_signature_by_someone_elses_key(s: Scene) -> Request:
    impostor = Identity(ORIGIN, s.id("grace"), s.people["lead"].author.key)
    return Request(impostor.sign(s.case, "opinion.given", s.opinion()))


def a_revoked_key(s: Scene) -> Request:
    s.served.authority.revoke(s.people["grace"].kid, "phone lost")
    return Request(an_opinion(s))


def another_ledgers_statement(s: Scene) -> Request:
    elsewhere = Identity("other.example/accord", s.id("grace"), s.people["grace"].author.key)
    return Request(elsewhere.sign(s.case, "opinion.given", s.opinion()))


def a_replayed_id_with_different_bytes(s: Scene) -> Request:
    statement_id = str(uuid.uuid4())
    first = s.sign("grace", "opinion.given", s.opinion(), statement_id=statement_id)
    assert post(s.served.url, first).status == 201
    changed = {**s.opinion(), "stance": "concern"}
    return Request(s.sign("grace", "opinion.given", changed, statement_id=statement_id))


def a_stream_id_that_is_not_random(s: Scene) -> Request:
    named = str(uuid.uuid5(uuid.NAMESPACE_DNS, "amara"))
    return Request(s.sign("grace", "opinion.given", s.opinion(), stream=named))


def a_directory_statement_by_a_member(s: Scene) -> Request:
    directory = str(s.served.record.directory_id)
    body = {"person": str(uuid.uuid4()), "name": "Rogue", "kind": "adult"}
    return Request(s.sign("grace", "person.registered", body, stream=directory))


def an_author_who_is_not_a_member(s: Scene) -> Request:
    return Request(s.sign("olu", "opinion.given", s.opinion()))


def a_parent_saying_what_only_professionals_may(s: Scene) -> Request:
    body = {"decision": s.decision, "reason": "Amara was asleep."}
    return Request(s.sign("grace", "child_view.not_obtained", body))


def an_opinion_on_a_withdrawn_proposal(s: Scene) -> Request:
    s.withdraw("home")
    return Request(an_opinion(s))


def agreement_before_the_child_is_heard(s: Scene) -> Request:
    s.consent()
    s.say("lead", "agreement.given", s.agreement())
    return Request(s.sign("grace", "agreement.given", s.agreement()))


def agreement_with_a_single_option(s: Scene) -> Request:
    s.withdraw("clinic")
    s.hear_child()
    s.consent()
    s.say("lead", "agreement.given", s.agreement())
    return Request(s.sign("grace", "agreement.given", s.agreement()))


def agreement_without_treatment_consent(s: Scene) -> Request:
    s.hear_child()
    s.say("lead", "agreement.given", s.agreement())
    return Request(s.sign("grace", "agreement.given", s.agreement()))


def a_statement_dated_ten_minutes_ahead(s: Scene) -> Request:
    at = format_recorded(datetime.now(UTC) + timedelta(minutes=10))
    return Request(s.sign("grace", "opinion.given", s.opinion(), at=at))


@dataclass(frozen=True)
class Row:
    make: Make
    status: int
    code: str
    rule: str | None = None


ROWS = [
    Row(malformed_json, 400, "malformed"),
    Row(an_empty_body, 400, "malformed"),
    Row(a_json_array, 400, "malformed"),
    Row(bytes_that_are_not_utf8, 400, "malformed"),
    Row(a_plain_text_content_type, 415, "unsupported_media_type"),
    Row(a_form_content_type, 415, "unsupported_media_type"),
    Row(a_number_where_a_person_belongs, 400, "malformed"),
    Row(a_signature_that_is_not_base64url, 400, "malformed"),
    Row(an_unknown_field_in_the_envelope, 400, "malformed"),
    Row(an_unknown_field_in_the_statement, 400, "malformed"),
    Row(an_unknown_field_in_the_body, 400, "malformed"),
    Row(a_float_in_the_body, 400, "malformed"),
    Row(a_duplicated_key, 400, "malformed"),
    Row(a_stream_id_that_is_not_random, 400, "malformed"),
    Row(a_mebibyte_body, 413, "too_large"),
    Row(a_chunked_mebibyte_body, 413, "too_large"),
    Row(a_body_one_byte_over_the_limit, 413, "too_large"),
    Row(a_bad_signature, 422, "signature_invalid"),
    Row(a_signature_by_an_unknown_key, 422, "unknown_key"),
    Row(a_signature_by_someone_elses_key, 422, "unknown_key"),
    Row(a_revoked_key, 422, "key_revoked"),
    Row(another_ledgers_statement, 400, "wrong_ledger"),
    Row(a_replayed_id_with_different_bytes, 409, "statement_conflict"),
    Row(a_directory_statement_by_a_member, 422, "not_permitted"),
    Row(an_author_who_is_not_a_member, 422, "not_a_member", "R1"),
    Row(a_parent_saying_what_only_professionals_may, 422, "not_permitted", "R3"),
    Row(an_opinion_on_a_withdrawn_proposal, 422, "stale_reference", "R5"),
    Row(agreement_before_the_child_is_heard, 422, "rule_violated", "R6"),
    Row(agreement_with_a_single_option, 422, "rule_violated", "R7"),
    Row(agreement_without_treatment_consent, 422, "rule_violated", "R9"),
    Row(a_statement_dated_ten_minutes_ahead, 422, "rule_violated", "R13"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.make.__name__ for row in ROWS])
def test_a_bad_submission_gets_its_problem_and_leaves_no_trace(scene: Scene, row: Row) -> None:
    request = row.make(scene)
    before = fingerprint(scene.served.record)

    answer = post(scene.served.url, request.data, request.content_type)

    assert answer.status == row.status, answer.body
    problem = answer.problem()
    assert problem["code"] == row.code
    assert problem["status"] == row.status
    assert problem.get("rule") == row.rule
    assert problem["type"] == f"urn:accord:problem:{row.code}"
    assert problem["detail"]
    assert problem["instance"] == "/v1/statements"
    assert fingerprint(scene.served.record) == before


def test_an_oversized_body_is_refused_before_the_client_has_sent_it(served: Served) -> None:
    # Only the headers and a few bytes of a declared mebibyte: the answer must not wait for
    # the rest (a client that never sends it would otherwise hold the request open).
    before = fingerprint(served.record)
    address = urlsplit(served.url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        conn.sendall(
            b"POST /v1/statements HTTP/1.1\r\n"
            + f"Host: {address.netloc}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {ONE_MIB}\r\n\r\n".encode()
            + b'{"statement": {'
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)  # socket.timeout (a failure) if the server waits for more
            assert chunk, "the server closed the connection without answering"
            answer += chunk

    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 413 ")
    assert f"content-type: {PROBLEM}" in head
    assert fingerprint(served.record) == before


# -- what is accepted ------------------------------------------------------------------------


def test_a_new_statement_is_created_with_a_receipt(scene: Scene) -> None:
    before = scene.served.record.size()

    answer = post(scene.served.url, an_opinion(scene))

    assert answer.status == 201
    assert answer.headers.get_content_type() == JSON
    receipt = msgspec.json.decode(answer.body, type=Receipt)
    assert receipt.stream == scene.case
    assert receipt.seq == scene.proposals["home"].seq + 1
    assert len(receipt.hash) == 64
    assert scene.served.record.size() == before + 1


def test_the_same_bytes_again_answer_200_with_the_same_receipt_and_store_nothing(
    scene: Scene,
) -> None:
    submission = an_opinion(scene)
    first = post(scene.served.url, submission)
    assert first.status == 201
    before = fingerprint(scene.served.record)

    again = post(scene.served.url, submission)

    assert again.status == 200
    assert msgspec.json.decode(again.body, type=Receipt) == msgspec.json.decode(
        first.body, type=Receipt
    )
    assert fingerprint(scene.served.record) == before


def test_the_sdk_tells_a_repeat_from_a_new_entry(scene: Scene) -> None:
    submission = an_opinion(scene)

    first = scene.client.submit(submission)
    again = scene.client.submit(submission)

    assert (first.created, again.created) == (True, False)
    assert again.receipt == first.receipt


def test_a_repeat_still_gets_its_receipt_after_the_key_is_revoked(scene: Scene) -> None:
    submission = an_opinion(scene)
    first = post(scene.served.url, submission)
    assert first.status == 201
    scene.served.authority.revoke(scene.people["grace"].kid, "phone lost")
    before = fingerprint(scene.served.record)

    again = post(scene.served.url, submission)

    assert again.status == 200
    assert again.body == first.body
    assert fingerprint(scene.served.record) == before


def test_a_charset_parameter_on_the_json_media_type_is_accepted(scene: Scene) -> None:
    answer = post(scene.served.url, an_opinion(scene), "application/json; charset=utf-8")

    assert answer.status == 201
