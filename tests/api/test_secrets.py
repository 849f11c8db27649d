"""Secrets stay secret: a bearer token's secret and every private key stay out of the access
log, problem bodies, metrics and every other answer, even when a request carries a bad or
revoked token; the store keeps only a digest of each token; the CLI shows a token once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization

from api.home import AUTHORITY_KEY, LEDGER_KEY, Home
from api.server import ACCESS_LOGGER
from api.tokens import Scope, issue, revoke
from domain.worked_case import CAST, Played
from ledger import access, keys
from ledger.encoding import b64url
from tests.api.conftest import Served
from tests.api.test_cli import CLI
from tests.api.test_events import Subprocess, accord, free_port

NAMES = {person.handle: person.name for person in CAST}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes


def request(
    url: str,
    path: str,
    authorization: str | None = None,
    data: bytes | None = None,
) -> Answer:
    """GET (or POST `data` as JSON), with the Authorization header given verbatim."""
    req = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST")
    if authorization is not None:
        req.add_header("Authorization", authorization)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def split(token: str) -> tuple[str, str]:
    """(id, secret) of `accord_<id>_<secret>`."""
    prefix, ident, secret = token.split("_", 2)
    assert prefix == "accord"
    return ident, secret


def private_forms(key: keys.Ed25519PrivateKey) -> list[str]:
    """Every spelling of a private key that could leak: PEM body, raw bytes in each encoding."""
    raw = key.private_bytes_raw()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    pem_body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return [pem_body, b64url(raw), base64.b64encode(raw).decode().rstrip("="), raw.hex()]


@dataclass
class Scene:
    """The worked case served, with the access log captured and every answer kept."""

    served: Served
    caplog: pytest.LogCaptureFixture
    played: Played
    answers: list[Answer] = field(default_factory=list)

    def token(self, handle: str) -> str:
        return self.served.token(self.served.people[NAMES[handle]], Scope.MEMBER)

    def get(self, path: str, authorization: str | None = None) -> Answer:
        answer = request(self.served.url, path, authorization)
        self.answers.append(answer)
        return answer

    def post(self, data: bytes) -> Answer:
        answer = request(self.served.url, "/v1/statements", data=data)
        self.answers.append(answer)
        return answer

    def plan(self) -> str:
        return f"/v1/cases/{self.played.case}/plan"

    def access_lines(self, count: int) -> list[dict[str, Any]]:
        """The JSON access lines, once at least `count` were written (after each answer)."""
        deadline = time.monotonic() + 10
        while True:
            lines = [r.getMessage() for r in self.caplog.records if r.name == ACCESS_LOGGER]
            if len(lines) >= count or time.monotonic() > deadline:
                assert len(lines) >= count, f"{len(lines)} access lines, expected {count}"
                return [orjson.loads(line) for line in lines]
            time.sleep(0.02)

    def raw_access_lines(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records if r.name == ACCESS_LOGGER]


@pytest.fixture
def scene(served: Served, caplog: pytest.LogCaptureFixture) -> Iterator[Scene]:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    played = served.play_worked_case()
    scene = Scene(served, caplog, played)
    # Each line is written after its answer: wait for the worked case's before starting afresh.
    scene.access_lines(len(played.receipts))
    caplog.clear()
    yield scene


def bad_and_revoked_requests(scene: Scene) -> tuple[str, list[str]]:
    """A good read, then reads with the same token mangled, then with it revoked.

    Returns the token and every header sent.
    """
    token = scene.token("grace")
    ident, secret = split(token)
    headers = [
        f"Bearer {token}",  # valid
        f"Bearer accord_{ident}_{secret}x",  # wrong secret that contains the real one
        f"Bearer accord_{uuid.uuid4().hex}_{secret}",  # the secret under an unknown id
        f"Bearer {secret}",  # the secret alone
        f"Token {token}",  # the whole token under another scheme
        token,  # no scheme at all
    ]
    assert scene.get(scene.plan(), headers[0]).status == 200
    for header in headers[1:]:
        assert scene.get(scene.plan(), header).status == 401
    revoke(scene.served.record, ident)
    assert scene.get(scene.plan(), headers[0]).status == 401
    assert scene.get("/v1/access", headers[0]).status == 401
    return token, headers


# -- the access log --------------------------------------------------------------------------


def test_access_log_lines_name_the_token_id_but_never_the_token_or_its_secret(
    scene: Scene,
) -> None:
    token, _ = bad_and_revoked_requests(scene)
    ident, secret = split(token)

    lines = scene.access_lines(8)

    for raw in scene.raw_access_lines():
        assert secret not in raw
        assert token not in raw
        assert "Bearer" not in raw
    reads = [line for line in lines if line["route"] == "/v1/cases/{case}/plan"]
    assert [(line["status"], line["token"]) for line in reads] == [(200, ident)] + [(401, None)] * 6
    assert [line.get("problem") for line in reads] == [None] + ["unauthorized"] * 6


def test_access_log_lines_hold_route_templates_not_paths_or_query_strings(scene: Scene) -> None:
    token = scene.token("grace")
    _, secret = split(token)
    path = f"{scene.plan()}?access_token={secret}&case={scene.played.case}"

    assert scene.get(path, f"Bearer {token}").status == 200

    [line] = scene.access_lines(1)
    assert line["route"] == "/v1/cases/{case}/plan"
    raw = scene.raw_access_lines()[0]
    assert secret not in raw
    assert scene.played.case not in raw


def test_a_signed_submission_leaves_no_signature_or_content_in_the_access_log(
    scene: Scene,
) -> None:
    grace = scene.served.people[NAMES["grace"]]
    submission = grace.sign(
        scene.played.case,
        "dissent.recorded",
        {"decision": scene.played.decision, "reasons": "Private family matters."},
    )
    sig = orjson.loads(submission)["sig"]
    answer = scene.post(submission)
    assert answer.status == 201, answer.body

    [line] = scene.access_lines(1)

    assert line["route"] == "/v1/statements"
    raw = scene.raw_access_lines()[0]
    assert sig not in raw
    assert "Private family matters" not in raw
    for form in private_forms(grace.author.key):
        assert form not in raw


def test_a_path_that_matches_no_route_is_logged_without_its_path(scene: Scene) -> None:
    token = scene.token("grace")
    _, secret = split(token)

    assert scene.get(f"/v1/tokens/{secret}", f"Bearer {token}").status == 404

    [line] = scene.access_lines(1)
    assert (line["route"], line["status"], line["problem"]) == (None, 404, "not_found")
    assert secret not in scene.raw_access_lines()[0]
    assert secret not in scene.get("/metrics").body.decode()


# -- problem bodies and metrics --------------------------------------------------------------


def test_problem_bodies_never_echo_a_token_even_a_bad_or_revoked_one(scene: Scene) -> None:
    token, headers = bad_and_revoked_requests(scene)
    _, secret = split(token)

    refusals = [a for a in scene.answers if a.status == 401]

    assert len(refusals) == 7
    for answer in refusals:
        assert answer.headers.get_content_type() == "application/problem+json"
        assert orjson.loads(answer.body)["code"] == "unauthorized"
        assert secret.encode() not in answer.body
        for header in headers:
            assert header.encode() not in answer.body
        for value in answer.headers.values():
            assert secret not in value


def test_metrics_never_show_a_token_its_id_or_a_case(scene: Scene) -> None:
    token, _ = bad_and_revoked_requests(scene)
    ident, secret = split(token)

    metrics = scene.get("/metrics").body.decode()

    assert 'route="/v1/cases/{case}/plan"' in metrics
    assert 'code="unauthorized"' in metrics
    assert secret not in metrics
    assert ident not in metrics
    assert scene.played.case not in metrics
    assert "Bearer" not in metrics


def test_no_private_key_appears_in_any_answer_or_log_line(scene: Scene) -> None:
    home = scene.served.home.path
    private = [
        *private_forms(keys.load_private_key(home / AUTHORITY_KEY)),
        *private_forms(keys.load_private_key(home / LEDGER_KEY)),
    ]
    for person in scene.served.people.values():
        private += private_forms(person.author.key)
    reviewer = scene.served.token(scene.served.reviewer(), Scope.REVIEWER)
    case, decision = scene.played.case, scene.played.decision
    for path in (
        "/v1/ledger",
        "/openapi.json",
        "/healthz",
        f"/v1/cases/{case}/plan",
        f"/v1/cases/{case}/audit",
        f"/v1/cases/{case}/register",
        f"/v1/cases/{case}/decisions/{decision}/trace",
    ):
        assert scene.get(path, f"Bearer {reviewer}").status == 200, path
    grace = scene.served.people[NAMES["grace"]]
    forged = orjson.loads(grace.sign(case, "dissent.recorded", {"decision": decision}))
    forged["statement"]["by"] = scene.served.people[NAMES["daniel"]].person
    assert scene.post(orjson.dumps(forged)).status == 422
    assert scene.get("/metrics").status == 200

    lines = scene.access_lines(len(scene.answers))

    seen = b"\n".join(a.body for a in scene.answers).decode() + "\n".join(scene.raw_access_lines())
    # The public keys are there, so the scan reads the real answers.
    ledger_info = orjson.loads(scene.answers[0].body)
    assert ledger_info["authority_key"] in seen and ledger_info["ledger_key"] in seen
    assert len(lines) == len(scene.answers)
    for form in private:
        assert form not in seen


# -- what is stored --------------------------------------------------------------------------


def stored_states(served: Served) -> list[bytes]:
    """Every stored record's state, entries and token records alike."""
    notifications = served.record.recorder.select_notifications(start=1, limit=1_000_000)
    return [bytes(n.state) for n in notifications]


def test_a_token_is_stored_only_as_the_digest_of_its_secret(scene: Scene) -> None:
    token = scene.token("grace")
    ident, secret = split(token)

    [(issued, revoked)] = [
        (i, r) for i, r in access.tokens(scene.served.record) if i.originator_id.hex == ident
    ]

    assert revoked is None
    assert issued.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert issued.digest != secret
    states = stored_states(scene.served)
    assert any(issued.digest.encode() in state for state in states)  # the scan sees tokens
    assert not any(secret.encode() in state for state in states)


def test_the_stored_digest_does_not_work_as_a_token(scene: Scene) -> None:
    token = scene.token("grace")
    ident, _ = split(token)
    [issued] = [i for i, _ in access.tokens(scene.served.record) if i.originator_id.hex == ident]

    answer = scene.get(scene.plan(), f"Bearer accord_{ident}_{issued.digest}")

    assert answer.status == 401
    assert scene.get(scene.plan(), f"Bearer {token}").status == 200


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli(scene: Scene, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(Path(scene.served.home.path), scene.served.home.config.store, capsys)


def test_a_cli_token_reads_over_http_until_the_cli_revokes_it(scene: Scene, cli: CLI) -> None:
    grace = scene.served.people[NAMES["grace"]].person
    token = cli.ok("token", "issue", "--person", grace, "--scope", "member")
    ident, secret = split(token)
    assert len(token.splitlines()) == 1

    assert scene.get(scene.plan(), f"Bearer {token}").status == 200

    listed = cli.ok("token", "list")
    [row] = [line for line in listed.splitlines() if line.startswith(ident)]
    assert "member" in row and NAMES["grace"] in row and row.endswith("active")

    assert cli.ok("token", "revoke", "--token", ident) == f"revoked {ident}"

    answer = scene.get(scene.plan(), f"Bearer {token}")
    assert answer.status == 401
    assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
    [row] = [line for line in cli.ok("token", "list").splitlines() if line.startswith(ident)]
    assert "revoked" in row
    assert secret not in listed


def test_token_list_shows_neither_a_secret_nor_a_digest(scene: Scene, cli: CLI) -> None:
    tokens = [scene.token("grace"), scene.token("daniel")]
    revoke(scene.served.record, split(tokens[1])[0])
    digests = [issued.digest for issued, _ in access.tokens(scene.served.record)]

    listed = cli.ok("token", "list")

    assert len(listed.splitlines()) == 2
    for token in tokens:
        ident, secret = split(token)
        assert ident in listed
        assert secret not in listed
    for digest in digests:
        assert digest not in listed


def test_revoking_a_token_twice_is_refused_and_changes_nothing(scene: Scene, cli: CLI) -> None:
    ident, _ = split(scene.token("grace"))
    cli.ok("token", "revoke", "--token", ident)
    listed = cli.ok("token", "list")

    code, out, err = cli("token", "revoke", "--token", ident)

    assert code == 1
    assert out == ""
    assert ident in err
    assert cli.ok("token", "list") == listed


# -- requests the HTTP parser refuses --------------------------------------------------------


def refused_requests(token: str) -> list[bytes]:
    """Requests aiohttp's parser cannot read, each carrying the token or its secret."""
    _, secret = split(token)
    bearer = f"Authorization: Bearer {token}".encode()
    head = b"GET /v1/access HTTP/1.1\r\nHost: clinic.example\r\n"
    return [
        head + bearer + b"\x7f\r\n\r\n",  # a DEL after the token
        head + bearer + b"\x00\r\n\r\n",
        head + bearer + b"\x1b[2J\r\n\r\n",  # a terminal escape
        head + b"X-Note: " + secret.encode() + b"\x01\r\n" + bearer + b"\r\n\r\n",
        head + bearer + b"A" * 9000 + b"\r\n\r\n",  # longer than a header may be
        head + b"Authorization Bearer " + token.encode() + b"\r\n\r\n",  # no colon
        head + b"Auth\x01orization: Bearer " + token.encode() + b"\r\n\r\n",  # a bad name
        f"GET /v1/tokens/{secret} junk HTTP/1.1\r\n".encode() + bearer + b"\r\n\r\n",
        f"G\x01T /v1/tokens/{secret} HTTP/1.1\r\n".encode() + bearer + b"\r\n\r\n",
        f"GET /v1/tokens/{secret} HTTP/7.1\r\n".encode() + bearer + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00" + token.encode() + b"\r\n\r\n",  # TLS sent to the HTTP port
    ]


def raw_exchange(url: str, data: bytes) -> bytes:
    """Send `data` on a fresh connection and read the answer until the server closes it."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def assert_refused_quietly(answer: bytes, token: str) -> None:
    """A 400 problem that quotes nothing of the request."""
    _, secret = split(token)
    assert secret.encode() not in answer
    assert b"Bearer" not in answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer
    assert b"Content-Type: application/problem+json" in head
    assert orjson.loads(body)["code"] == "malformed"


def test_a_request_the_parser_refuses_is_answered_and_logged_without_its_headers(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's included, at every level
    token = served.token(served.person("Grace Okoye"), Scope.MEMBER)
    _, secret = split(token)
    sent = refused_requests(token)

    for data in sent:
        assert_refused_quietly(raw_exchange(served.url, data), token)

    deadline = time.monotonic() + 10
    while len(access := [r for r in caplog.records if r.name == ACCESS_LOGGER]) < len(sent):
        assert time.monotonic() < deadline, f"{len(access)} access lines for {len(sent)}"
        time.sleep(0.02)
    lines = [orjson.loads(record.getMessage()) for record in access]
    assert [(line["status"], line["problem"]) for line in lines] == [(400, "malformed")] * len(sent)
    assert all(line["method"] is None and line["route"] is None for line in lines)
    assert secret not in caplog.text
    assert "Bearer" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_accord_serve_writes_no_header_value_to_stdout_or_stderr(tmp_path: Path) -> None:
    home_path = tmp_path / "home"
    accord("--home", str(home_path), "init", "--origin", "clinic.example/accord")
    home = Home.load(home_path)
    with home.open_ledger() as record:
        authority = home.authority(record)
        admin = authority.register("Ada Admin", "professional", profession="administrator")
        authority.appoint_administrator(admin)
        token = issue(record, admin, Scope.ADMIN)
    _, secret = split(token)
    server = Subprocess(home_path, free_port(), tmp_path / "server.log")
    server.start()
    try:
        asyncio.run(server.ready())
        for data in refused_requests(token):
            assert_refused_quietly(raw_exchange(server.url, data), token)
        good = request(server.url, "/v1/access", f"Bearer {token}")
        assert good.status == 200
    finally:
        server.stop()

    output = server.log.read_text()
    assert secret not in output
    assert "Bearer" not in output
    assert "Traceback" not in output
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    refused = [line for line in lines if line["status"] == 400]
    assert len(refused) == len(refused_requests(token))
    assert {line["route"] for line in lines if line["status"] == 200} >= {"/v1/access"}
