"""One statement must not corrupt the ledger: a statement naming anything but a case record or
the directory is refused and changes nothing, a group commit answers every statement by what
happened to it, whatever fails, and a follower that cannot advance says so."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.client import AccordError, AsyncClient, Client, Identity, Submitted
from api.home import Home
from api.tokens import Scope, revoke
from api.verify import verify_ledger
from ledger import access
from ledger.stream import ENTRY_TOPIC, claim_id
from tests.api.conftest import Served
from tests.api.test_background import server, until
from tests.api.test_events import Subprocess
from tests.conftest import fingerprint, tamper
from tests.ledger.test_record_ids import planted_token
from tests.poison import MARKER, poison

CASES = 3
__all__ = ["server"]  # the fixture of a server whose followers run in a process of their own


def token_id(token: str) -> uuid.UUID:
    """The id in a token `accord_<id hex>_<secret>`."""
    return uuid.UUID(hex=token.removeprefix("accord_").split("_", 1)[0])


def older_token(served: Served, person: str) -> uuid.UUID:
    return planted_token(served.record, person)


def older_read(served: Served, person: str, case: str) -> uuid.UUID:
    """A recorded read under a random (v4) id, planted likewise."""
    planted = uuid.uuid4()
    served.record.record(
        access.ReadRecorded(
            originator_id=planted,
            person=person,
            token="0" * 32,
            stream=case,
            what="plan",
            at=served.record.clock.next(),
        )
    )
    return planted


def verified(served: Served) -> None:
    """`accord verify`'s check of the whole ledger passes on a freshly opened ledger."""
    with served.home.open_ledger() as record:
        verify_ledger(record, served.home.ledger_key().public_key(), None, workers=1)


@dataclass
class Scene:
    """A served ledger with a lead, open cases, and records of every kind beside the streams."""

    served: Served
    lead: Identity
    other: Identity
    cases: list[str]
    ids: list[str]  # every id the store holds, streams and records alike

    def decision(self, stream: str, question: str = "Which?") -> bytes:
        body = {"decision": str(uuid.uuid4()), "question": question, "required": [self.lead.person]}
        return self.lead.sign(stream, "decision.opened", body)


@pytest.fixture
def scene(served: Served) -> Iterator[Scene]:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    other = served.person("Dr Ng", "professional", profession="nurse")
    child = served.person("Kai", "child", born="2017-01-01")
    cases = [str(uuid.uuid4()) for _ in range(CASES)]
    elsewhere = str(uuid.uuid4())  # another person's case
    with served.client() as client:
        for case in cases:
            body = {"child": child.person, "title": "Integrity", "lead": lead.person}
            client.submit(lead.sign(case, "case.opened", body))
        body = {"child": child.person, "title": "Elsewhere", "lead": other.person}
        client.submit(other.sign(elsewhere, "case.opened", body))
    served.token(lead, Scope.MEMBER)
    served.token(other, Scope.MEMBER)
    older_token(served, other.person)
    access.record_read(served.record, other.person, "0" * 32, elsewhere, "plan")
    older_read(served, other.person, elsewhere)
    notifications = served.record.recorder.select_notifications(start=1, limit=10_000)
    ids = sorted({str(n.originator_id) for n in notifications})
    assert str(served.record.directory_id) in ids and elsewhere in ids
    yield Scene(served, lead, other, cases, ids)


async def post_all(url: str, batch: list[bytes]) -> list[Submitted | AccordError]:
    """Post every submission at once (so that they are committed in groups)."""

    async def post(client: AsyncClient, data: bytes) -> Submitted | AccordError:
        try:
            return await client.submit(data)
        except AccordError as exc:
            return exc

    async with AsyncClient(url) as client:
        return list(await asyncio.gather(*(post(client, data) for data in batch)))


def test_statements_naming_records_are_refused_and_change_nothing(scene: Scene) -> None:
    served, lead = scene.served, scene.lead
    own = token_id(served.token(lead, Scope.MEMBER))
    read = access.record_read(served.record, lead.person, own.hex, scene.cases[0], "plan")
    with served.client() as client:
        first = client.submit(scene.decision(scene.cases[0]))
    claimed = uuid.UUID(first.receipt.stream)  # a real stream: its claim is what is named
    statement_id = str(uuid.uuid4())
    with served.client() as client:
        client.submit(
            lead.author.submission(
                scene.cases[0],
                "decision.opened",
                {"decision": str(uuid.uuid4()), "question": "Claimed?", "required": [lead.person]},
                statement_id=statement_id,
            )
        )
    named = {
        "the lead's own token": (own, "malformed"),
        "another person's older token": (older_token(served, scene.other.person), "unknown_stream"),
        "a recorded read": (read.originator_id, "malformed"),
        "an older recorded read": (
            older_read(served, lead.person, str(claimed)),
            "unknown_stream",
        ),
        "a statement id's claim": (claim_id(statement_id), "malformed"),
    }
    for what, (stream, code) in named.items():
        before = fingerprint(served.record)
        [answer] = asyncio.run(post_all(served.url, [scene.decision(str(stream))]))
        assert isinstance(answer, AccordError), what
        assert (answer.code, answer.status < 500) == (code, True), what
        assert fingerprint(served.record) == before, what
    verified(served)


def test_a_group_with_statements_naming_records_answers_every_good_one(scene: Scene) -> None:
    served = scene.served
    good = [scene.decision(scene.cases[n % CASES]) for n in range(24)]
    records = [i for i in scene.ids if i not in scene.cases]
    bad = [scene.decision(i) for i in records]
    batch = [*bad]
    for n, data in enumerate(good):  # each bad one amid good ones
        batch.insert(2 * n, data)
    answers = asyncio.run(post_all(served.url, batch))
    by_data = dict(zip(batch, answers, strict=True))
    for data in good:
        answer = by_data[data]
        assert isinstance(answer, Submitted) and answer.created, answer
    for any_answer in answers:
        assert isinstance(any_answer, Submitted) or any_answer.status < 500, any_answer
    verified(served)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_id_the_store_holds_amid_bursts_of_good_statements(
    scene: Scene, data: st.DataObject
) -> None:
    served = scene.served
    # Every id the store holds now: streams, tokens, reads, claims, other cases, the directory.
    held = sorted(
        {str(n.originator_id) for n in served.record.recorder.select_notifications(1, 100_000)}
    )
    # Drawn as positions, not ids: the store holds more ids at each example.
    picks = data.draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=12), label="picks")
    named = [held[pick % len(held)] for pick in picks]
    writers = data.draw(st.sampled_from([scene.lead, scene.other]), label="writer")
    good = [scene.decision(scene.cases[n % CASES]) for n in range(data.draw(st.integers(1, 24)))]
    drawn = [
        writers.sign(
            i,
            "decision.opened",
            {"decision": str(uuid.uuid4()), "question": "Drawn?", "required": [writers.person]},
        )
        for i in named
    ]
    batch = data.draw(st.permutations(good + drawn), label="order")
    answers = asyncio.run(post_all(served.url, batch))
    by_data = dict(zip(batch, answers, strict=True))
    for item in good:
        assert isinstance(by_data[item], Submitted), by_data[item]
    for any_answer in answers:
        assert isinstance(any_answer, Submitted) or any_answer.status < 500, any_answer
    verified(served)


def test_a_store_failure_in_a_group_answers_each_statement_by_what_happened(scene: Scene) -> None:
    served = scene.served
    poison(served.record)
    good = [scene.decision(scene.cases[n % CASES]) for n in range(30)]
    bad = [scene.decision(scene.cases[n % CASES], MARKER) for n in range(5)]
    batch = [*good[:10], *bad, *good[10:]]
    before = fingerprint(served.record)
    answers = asyncio.run(post_all(served.url, batch))
    by_data = dict(zip(batch, answers, strict=True))
    for data in good:
        answer = by_data[data]
        assert isinstance(answer, Submitted) and answer.created, answer
    for data in bad:
        refused = by_data[data]
        assert isinstance(refused, AccordError)
        assert (refused.status, refused.code) == (503, "unavailable")
    assert fingerprint(served.record)[1] == before[1] + len(good)
    verified(served)


def plant_undecodable_entry(served: Served) -> tuple[uuid.UUID, int]:
    """A row under the entry topic that is not an entry, written through the store's own
    recorder; returns its id and the last notification before it that the projections follow."""
    followed = served.record.recorder.select_notifications(
        start=1, limit=100_000, topics=[ENTRY_TOPIC, access.READ_TOPIC]
    )
    planted = uuid.uuid4()
    served.record.recorder.insert_events(
        [StoredEvent(planted, 1, ENTRY_TOPIC, b"this is not an entry")]
    )
    return planted, followed[-1].id


def test_a_follower_that_cannot_advance_says_so_in_health_and_metrics(
    served: Served, store_url: str
) -> None:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    with served.client() as client:  # the projections include everything so far
        assert until(lambda: client.health().projections_lag == 0)
    planted, stuck_at = plant_undecodable_entry(served)
    with served.client() as client:

        def degraded() -> bool:
            return client.health().status == "degraded"

        assert until(degraded), "the follower is stuck, yet /healthz says ok"
        health = client.health()
        projections = [s for s in health.stuck if s.follower == "projections"]
        assert len(projections) == 1
        assert projections[0].position == stuck_at
        assert projections[0].error.startswith("integrity_violated: stream ")
        assert projections[0].failures >= 1
        metrics = client.metrics()
        assert "\naccord_followers_stuck " in metrics
        assert "accord_followers_stuck 0.0" not in metrics
        assert f'accord_follower_stuck_position{{follower="projections"}} {stuck_at}.0' in metrics
        # Statements are still accepted meanwhile: only the projections wait.
        case = str(uuid.uuid4())
        child = served.person("Kai", "child", born="2017-01-01")
        body = {"child": child.person, "title": "Meanwhile", "lead": lead.person}
        assert client.submit(lead.sign(case, "case.opened", body)).created
        # Once the row is gone the follower advances again, and says so.
        tamper(store_url, planted, 1, None, application=type(served.record))
        assert until(lambda: client.health().status == "ok")
        assert client.health().stuck == []
        metrics = client.metrics()
        assert "\naccord_followers_stuck 0.0" in metrics
        assert "accord_follower_stuck_position{" not in metrics


def test_a_stuck_follower_in_the_followers_process_is_reported_by_the_server(
    server: tuple[Subprocess, Home],
) -> None:
    process, home = server
    with Client(process.url) as client:  # the projections include everything so far
        assert until(lambda: client.health().projections_lag == 0)
    with home.open_ledger() as record:
        followed = record.recorder.select_notifications(
            start=1, limit=100_000, topics=[ENTRY_TOPIC, access.READ_TOPIC]
        )
        record.recorder.insert_events(
            [StoredEvent(uuid.uuid4(), 1, ENTRY_TOPIC, b"this is not an entry")]
        )
        record.appended_elsewhere()
    with Client(process.url) as client:
        assert until(lambda: client.health().status == "degraded")
        [projections] = [s for s in client.health().stuck if s.follower == "projections"]
        assert projections.position == followed[-1].id
        assert projections.error.startswith("integrity_violated: stream ")
        metrics = client.metrics()
        assert "accord_followers_stuck 0.0" not in metrics
        assert f'accord_follower_stuck_position{{follower="projections"}} {followed[-1].id}.0' in (
            metrics
        )


def test_older_tokens_keep_working_and_a_stream_id_is_no_token(scene: Scene) -> None:
    served, lead = scene.served, scene.lead
    older = uuid.uuid4()
    served.record.record(
        access.TokenIssued(
            originator_id=older,
            person=lead.person,
            scope="member",
            digest=hashlib.sha256(b"older-secret").hexdigest(),
            issued_at=served.record.clock.next(),
        )
    )
    with served.client(f"accord_{older.hex}_older-secret") as client:
        assert client.plan(scene.cases[0]).case == scene.cases[0]
    # A case's id in a token's place names no token, whatever the secret.
    case = uuid.UUID(scene.cases[0])
    with served.client(f"accord_{case.hex}_older-secret") as client, pytest.raises(AccordError):
        client.plan(scene.cases[0])
    revoke(served.record, older.hex)
    with served.client(f"accord_{older.hex}_older-secret") as client, pytest.raises(AccordError):
        client.plan(scene.cases[0])
