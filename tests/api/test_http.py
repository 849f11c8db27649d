"""The HTTP API end to end over loopback: the worked case, read-your-writes, timeouts, health,
metrics and the SDK's typed errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import Settings
from api.client import AsyncClient, Forbidden, Identity, NotFound, Rejected, Unauthorized
from api.home import Home
from api.server import Running
from api.tokens import Scope
from ledger import keys
from tests.api.conftest import ORIGIN, Served, serve_in_thread


def open_case(served: Served, lead: Identity, child: Identity, title: str) -> tuple[str, bytes]:
    case = str(uuid.uuid4())
    body = {"child": child.person, "title": title, "lead": lead.person}
    return case, lead.sign(case, "case.opened", body)


def test_the_worked_case_reads_back_through_the_api(served: Served) -> None:
    played = served.play_worked_case()
    with served.client(served.token(served.reviewer(), Scope.REVIEWER)) as client:
        plan = client.plan(played.case)
        audit = client.audit(played.case)
        trace = client.trace(played.case, played.decision)
        register = client.register(played.case)
    assert plan.case == played.case
    assert [d.status for d in plan.decisions] == ["agreed"]
    assert [row.seq for row in audit] == list(range(1, 26))
    assert {row.signature for row in audit} == {"valid"}
    assert audit[-1].hash == played.receipts[list(played.receipts)[-1]].hash
    assert trace.decision.id == played.decision
    assert any(c.withdrawn_at for c in register.consents)


def test_a_write_is_readable_as_soon_as_it_is_answered(served: Served) -> None:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    child = served.person("Kai", "child", born="2017-01-01")
    token = served.token(lead, Scope.MEMBER)
    with served.client(token) as client:
        for n in range(5):
            case, submission = open_case(served, lead, child, f"Case {n}")
            assert client.submit(submission).created
            # No retry, no sleep: the 201 came only once the projections held the case.
            assert client.plan(case).title == f"Case {n}"


def test_a_repeat_answers_200_with_the_first_receipt(served: Served) -> None:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    child = served.person("Kai", "child", born="2017-01-01")
    _, submission = open_case(served, lead, child, "Once")
    with served.client() as client:
        first = client.submit(submission)
        again = client.submit(submission)
    assert (first.created, again.created) == (True, False)
    assert again.receipt == first.receipt


def test_the_sdk_raises_typed_errors_carrying_the_problem_code(served: Served) -> None:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    child = served.person("Kai", "child", born="2017-01-01")
    stranger = Identity(ORIGIN, lead.person, keys.generate())  # a key nobody bound
    case, _ = open_case(served, lead, child, "t")
    with served.client() as anonymous:
        with pytest.raises(Rejected) as refused:
            anonymous.say(stranger, case, "case.opened", {"child": child.person})
        assert (refused.value.status, refused.value.code) == (422, "unknown_key")
        with pytest.raises(Unauthorized) as unauthorised:
            anonymous.plan(case)
        assert unauthorised.value.code == "unauthorized"
    with served.client(served.token(child, Scope.MEMBER)) as member:
        with pytest.raises(Forbidden) as forbidden:
            member.plan(case)
        assert forbidden.value.code == "forbidden"
    with served.client(served.token(served.reviewer(), Scope.REVIEWER)) as reviewer:
        with pytest.raises(NotFound) as missing:
            reviewer.plan(case)  # never opened
        assert missing.value.code == "not_found"


def test_the_async_client_works_like_the_sync_one(served: Served) -> None:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    child = served.person("Kai", "child", born="2017-01-01")
    token = served.token(lead, Scope.MEMBER)

    async def run() -> tuple[str, str, int]:
        async with AsyncClient(served.url, token) as client:
            case = str(uuid.uuid4())
            body = {"child": child.person, "title": "Async", "lead": lead.person}
            receipt = await client.say(lead, case, "case.opened", body)
            plan = await client.plan(case)
            info = await client.ledger()
            return plan.title, receipt.stream, info.size

    title, stream, size = asyncio.run(run())
    assert title == "Async"
    assert uuid.UUID(stream).version == 4
    assert 0 < size <= served.record.size()  # the signed tree's size: at most a second behind


def test_ledger_info_names_the_ledger_and_its_keys(served: Served) -> None:
    with served.client() as client:
        info = client.ledger()
    assert info.origin == ORIGIN
    assert info.authority_key == served.home.config.authority_key
    assert info.ledger_key == served.home.config.ledger_key
    assert info.directory == str(served.record.directory_id)


def test_metrics_count_requests_appends_and_rejections_by_code(served: Served) -> None:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    child = served.person("Kai", "child", born="2017-01-01")
    with served.client() as client:
        client.submit(open_case(served, lead, child, "counted")[1])
        with pytest.raises(Rejected):
            client.submit(b'{"statement": {}, "sig": "x"}')
        text = client.metrics()
        health = client.health()
    assert "accord_appends_total 1.0" in text
    assert 'accord_rejections_total{code="malformed"} 1.0' in text
    assert 'route="/v1/statements",status="201"' in text
    assert "accord_follower_lag 0.0" in text
    assert (health.status, health.leader, health.projections_lag) == ("ok", True, 0)


@pytest.fixture
def impatient(tmp_path: Path, store_url: str) -> Iterator[Running]:
    """A server with short timeouts, to see slow clients cut off."""
    home = Home.create(tmp_path / "home", ORIGIN, store_url)
    with serve_in_thread(home, Settings(body_timeout=0.5, idle_timeout=1.0)) as server:
        yield server


async def _exchange(url: str, data: bytes, wait: float) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def test_a_client_that_stalls_mid_body_gets_408_and_nothing_is_stored(
    impatient: Running,
) -> None:
    before = impatient.service.record.size()
    request = (
        b"POST /v1/statements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 200\r\n\r\n{"statement": '
    )
    answer = asyncio.run(_exchange(impatient.url, request, wait=10))
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"timeout"' in answer
    assert impatient.service.record.size() == before


def test_a_client_that_trickles_its_headers_is_disconnected(impatient: Running) -> None:
    answer = asyncio.run(_exchange(impatient.url, b"GET /v1/ledger HTTP/1.1\r\nHo", wait=10))
    assert answer == b""  # closed by the server, well before the client's own 10 s
