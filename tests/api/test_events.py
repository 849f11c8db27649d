"""The event stream end to end over loopback: catch-up batches and live Server-Sent
Events as CloudEvents read with the reference SDK, consent scoping with the worked case, the
SDK's verifying subscriber, and a subscriber that loses nothing when the server is killed."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from api.app import Settings
from api.client import AsyncClient, Identity
from api.events import Feed
from api.home import Home
from api.server import running
from api.subscriber import Received, Untrusted, Verifier
from api.tokens import Scope, issue
from domain.worked_case import CAST, SCHOOL, Played, birth_date, play
from ledger import keys
from ledger.canonical import canonical
from ledger.encoding import b64url
from ledger.entry import read_entry
from ledger.files import SymlinkRefused
from ledger.log import Log, SealedEntry
from ledger.receipt import Receipt
from ledger.sealer import Sealer
from ledger.statement import parse_submission, signing_input
from tests.api.conftest import ORIGIN, Served, serve_in_thread

BATCH = "application/cloudevents-batch+json"
ATTRIBUTES = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "sequence",
    "entryhash",
    "data",
}


# -- catch-up: /v1/events ---------------------------------------------------------------------


def test_every_catch_up_event_is_a_cloudevent_carrying_its_entry(served: Served) -> None:
    service = served_service(served)
    served.play_worked_case()
    log = sealed(served)
    answer = asyncio.run(get(served.url, "/v1/events?limit=10000", service))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == BATCH
    assert answer.headers["Accord-Scoped"] == "false"
    assert answer.headers["Accord-Next-After"] == str(len(log) - 1)
    batch = orjson.loads(answer.body)
    assert [int(e["sequence"]) for e in batch] == list(range(len(log)))  # dense, 0-based
    for raw, entry in zip(batch, log, strict=True):
        assert_is_the_cloudevent_of(raw, entry)


def test_catch_up_without_after_or_after_minus_one_starts_at_position_zero(
    served: Served,
) -> None:
    service = served_service(served)
    log = sealed(served)
    for query in ("", "?after=-1", "?limit=3", "?after=-1&limit=3"):
        answer = asyncio.run(get(served.url, f"/v1/events{query}", service))
        assert answer.status == 200, query
        batch = orjson.loads(answer.body)
        assert batch, query
        assert batch[0]["sequence"] == "0", query
        assert batch[0]["entryhash"] == log[0].hash, query


def test_catch_up_returns_at_most_limit_events_after_the_position_asked(served: Served) -> None:
    service = served_service(served)
    served.play_worked_case()
    log = sealed(served)
    after, pages = -1, []
    while True:
        answer = asyncio.run(get(served.url, f"/v1/events?after={after}&limit=7", service))
        batch = orjson.loads(answer.body)
        assert len(batch) <= 7
        if not batch:
            assert answer.headers["Accord-Next-After"] == str(after)
            break
        assert [int(e["sequence"]) for e in batch] == list(range(after + 1, after + 1 + len(batch)))
        assert answer.headers["Accord-Next-After"] == batch[-1]["sequence"]
        pages.append(len(batch))
        after = int(batch[-1]["sequence"])
    assert sum(pages) == len(log)
    assert pages[:-1] == [7] * (len(pages) - 1)
    middle = asyncio.run(get(served.url, "/v1/events?after=10&limit=1", service))
    assert [e["entryhash"] for e in orjson.loads(middle.body)] == [log[11].hash]
    beyond = asyncio.run(get(served.url, f"/v1/events?after={len(log) + 5}", service))
    assert (beyond.status, orjson.loads(beyond.body)) == (200, [])


def test_the_event_stream_refuses_a_parents_and_a_reviewers_token_with_403(
    served: Served,
) -> None:
    served.play_worked_case()
    parent = served.person("Grace Okoye")  # Amara's mother, a member of the worked case
    member = served.token(parent, Scope.MEMBER)
    reviewer = served.token(served.reviewer(), Scope.REVIEWER)
    for token in (member, reviewer):
        for path in ("/v1/events", "/v1/events/live", "/v1/events/live?after=-1"):
            answer = asyncio.run(get(served.url, path, token))
            assert answer.status == 403, path
            assert orjson.loads(answer.body)["code"] == "forbidden"


def test_the_event_stream_answers_401_without_a_valid_token(served: Served) -> None:
    service = served_service(served)
    forged = service[: -len("secret")] + "secret"
    for token in (None, forged, "accord_nonsense"):
        for path in ("/v1/events", "/v1/events/live"):
            answer = asyncio.run(get(served.url, path, token))
            assert answer.status == 401, (path, token)
            assert orjson.loads(answer.body)["code"] == "unauthorized"


def test_catch_up_refuses_a_position_or_limit_that_is_not_a_number(served: Served) -> None:
    service = served_service(served)
    for query in ("after=x", "after=-2", "limit=-1", "limit=ten"):
        answer = asyncio.run(get(served.url, f"/v1/events?{query}", service))
        assert answer.status == 400, query
        assert orjson.loads(answer.body)["code"] == "malformed"


def test_catch_up_with_limit_zero_returns_no_events_or_refuses(served: Served) -> None:
    service = served_service(served)
    sealed(served)
    answer = asyncio.run(get(served.url, "/v1/events?limit=0", service))
    if answer.status == 200:
        assert orjson.loads(answer.body) == []
    else:
        assert answer.status == 400
        assert orjson.loads(answer.body)["code"] == "malformed"


@pytest.mark.parametrize(
    "query", ["after=%C2%B2", "limit=%C2%B2", "after=%D9%A1", "after=%EF%BC%91"]
)
def test_positions_and_limits_are_ascii_digits_only(served: Served, query: str) -> None:
    """Superscript two, Arabic-Indic one, fullwidth one: digits to `str.isdigit`, not positions."""
    service = served_service(served)
    paths = ("/v1/events",) if query.startswith("limit") else ("/v1/events", "/v1/events/live")
    for path in paths:  # (the live stream has no limit)
        answer = asyncio.run(get(served.url, f"{path}?{query}", service))
        assert answer.status == 400, (path, answer.status, answer.body[:100])
        assert orjson.loads(answer.body)["code"] == "malformed"


# -- consent scoping --------------------------------------------------------------------------


def test_a_school_token_sees_the_case_only_while_its_sharing_consent_is_in_force(
    served: Served,
) -> None:
    scenario = play_with_sharing(served)
    school = served.token(
        served.person("School events", "service"), Scope.SERVICE, served.organisation(SCHOOL)
    )
    log = sealed(served)
    scoped = asyncio.run(catch_up(served.url, school, last=len(log) - 1))
    assert scoped.scoped
    case_events = [e for e in scoped.events if e["subject"] == scenario.played.case]
    # Sharing begins with the consent, shows only the families it lists (decision, proposal,
    # action) and ends with the withdrawal: nothing recorded after it, of any family.
    assert [e["entryhash"] for e in case_events] == [
        scenario.played.hash("consent:sharing"),
        scenario.played.hash("action"),
        *(receipt.hash for receipt in scenario.in_force),
        scenario.played.hash("withdraw"),
    ]
    assert [e["type"] for e in case_events] == [
        "accord.consent.given",
        "accord.action.assigned",
        "accord.decision.opened",
        "accord.proposal.made",
        "accord.action.assigned",
        "accord.consent.withdrawn",
    ]
    hidden = {receipt.hash for receipt in scenario.after_withdrawal}
    assert not hidden & {e["entryhash"] for e in scoped.events}
    by_hash = {entry.hash: entry for entry in log}
    for raw in scoped.events:
        assert_is_the_cloudevent_of(raw, by_hash[raw["entryhash"]])


def test_a_school_token_sees_no_case_without_a_consent_naming_the_school(served: Served) -> None:
    scenario = play_with_sharing(served)
    school = served.token(
        served.person("School events", "service"), Scope.SERVICE, served.organisation(SCHOOL)
    )
    other = served.token(
        served.person("Council events", "service"), Scope.SERVICE, served.organisation("Council")
    )
    log = sealed(served)
    for token, expected in ((school, {scenario.played.case}), (other, set())):
        scoped = asyncio.run(catch_up(served.url, token, last=len(log) - 1))
        cases = {e["subject"] for e in scoped.events} - {directory(served)}
        assert cases == expected
    assert scenario.unshared in {entry.stream for entry in log}  # it is there, just not shared


def test_a_consent_that_names_a_decision_shares_only_that_decisions_entries(
    served: Served,
) -> None:
    played = served.play_worked_case()
    grace, okafor, sam = (served.people[n] for n in ("Grace Okoye", "Dr Ngozi Okafor", "Sam Reyes"))
    surgery = served.organisation("Riverside Surgery")
    until = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    consent = {
        "decision": played.decision,
        "basis": "parental responsibility",
        "scope": {
            "type": "sharing",
            "organisation": surgery,
            "purpose": "Physiotherapy follow-up",
            "data_kinds": ["decision", "proposal", "action", "review", "information"],
            "until": until,
        },
    }
    other = str(uuid.uuid4())
    due = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()

    def action(decision: str) -> dict[str, Any]:
        return {"decision": decision, "action": str(uuid.uuid4()), "owner": sam.person, "due": due}

    with served.client() as client:

        def say(who: Identity, kind: str, body: dict[str, Any]) -> str:
            return client.submit(who.sign(played.case, kind, body)).receipt.hash

        given = say(grace, "consent.given", consent)
        shown = [
            say(sam, "action.assigned", action(played.decision)),
            say(sam, "review.scheduled", {"decision": played.decision, "due": due}),
        ]
        hidden = [
            say(
                okafor,
                "decision.opened",
                {"decision": other, "question": "Swimming?", "required": [okafor.person]},
            ),
            say(
                sam,
                "proposal.made",
                {"decision": other, "proposal": str(uuid.uuid4()), "title": "Pool"},
            ),
            say(sam, "action.assigned", action(other)),
            say(
                okafor,
                "information.shared",
                {
                    "recipient": surgery,
                    "purpose": "Follow-up",
                    "what": "The plan.",
                    "basis": "consent",
                    "consent": given,
                },
            ),
        ]
    token = served.token(served.person("Surgery events", "service"), Scope.SERVICE, surgery)
    log = sealed(served)
    scoped = asyncio.run(catch_up(served.url, token, last=len(log) - 1))
    seen = [e["entryhash"] for e in scoped.events if e["subject"] == played.case]
    assert seen == [given, *shown]
    assert not set(hidden) & {e["entryhash"] for e in scoped.events}


def test_a_scoped_token_sees_keys_but_never_who_people_are(served: Served) -> None:
    play_with_sharing(served)
    school = served.token(
        served.person("School events", "service"), Scope.SERVICE, served.organisation(SCHOOL)
    )
    log = sealed(served)
    scoped = asyncio.run(catch_up(served.url, school, last=len(log) - 1))
    seen = [e for e in scoped.events if e["subject"] == directory(served)]
    expected = [
        entry.hash
        for entry in log
        if entry.stream == directory(served)
        and read_entry(entry.data).statement.kind in ("key.bound", "key.revoked")
    ]
    assert [e["entryhash"] for e in seen] == expected
    assert {e["type"] for e in seen} == {"accord.key.bound"}
    assert not any(e["type"] == "accord.person.registered" for e in scoped.events)


def test_an_unscoped_service_token_sees_every_event(served: Served) -> None:
    play_with_sharing(served)
    service = served_service(served)
    log = sealed(served)
    everything = asyncio.run(catch_up(served.url, service, last=len(log) - 1))
    assert not everything.scoped
    assert [e["entryhash"] for e in everything.events] == [entry.hash for entry in log]


def test_a_scoped_live_stream_shows_exactly_what_scoped_catch_up_shows(served: Served) -> None:
    play_with_sharing(served)
    school = served.token(
        served.person("School events", "service"), Scope.SERVICE, served.organisation(SCHOOL)
    )
    log = sealed(served)
    scoped = asyncio.run(catch_up(served.url, school, last=len(log) - 1))
    stream = asyncio.run(live(served.url, school, "?after=-1", until=having(len(scoped.events))))
    assert stream.headers["Accord-Scoped"] == "true"
    assert [e for _, e in stream.events] == scoped.events
    assert [i for i, _ in stream.events] == [int(e["sequence"]) for e in scoped.events]


REASON = "lost laptop at Ward 7 (mental health unit)"


@dataclass
class Revoked:
    """`play_with_sharing`, then Sam's key revoked (compromised since his first shared entry,
    for `REASON`) and a new key bound to him; the school's and an unscoped service's tokens."""

    scenario: Scenario
    log: list[SealedEntry]
    school: str
    service: str
    revocation: SealedEntry
    compromised_since: str
    sam: Identity


def revoke_sams_key(served: Served) -> Revoked:
    scenario = play_with_sharing(served)
    school = served.token(
        served.person("School events", "service"), Scope.SERVICE, served.organisation(SCHOOL)
    )
    service = served_service(served)
    sam = served.person("Sam Reyes")
    action = read_entry(
        next(e for e in sealed(served) if e.hash == scenario.played.hash("action")).data
    )
    since = action.recorded_at[:19] + "Z"  # an `at`, at or before the action's recording
    served.authority.revoke(sam.author.kid, REASON, compromised_since=since)
    served.authority.bind(sam.person, keys.generate().public_key())
    log = sealed(served)
    revocation = next(
        e
        for e in log
        if e.stream == directory(served) and read_entry(e.data).statement.kind == "key.revoked"
    )
    return Revoked(scenario, log, school, service, revocation, since[:-1] + ".000Z", sam)


def who_people_are(served: Served) -> list[str]:
    """Every name and birth date the directory holds, and the revocation's reason."""
    people = served.record.directory().persons.values()
    return [REASON, *(p.name for p in people), *(p.born for p in people if p.born is not None)]


async def catch_up_bytes(url: str, token: str, last: int) -> bytes:
    """Every byte of every catch-up page, paging through /v1/events up to position `last`."""
    pages, after = [], -1
    async with asyncio.timeout(10):
        while after < last:
            answer = await get(url, f"/v1/events?after={after}&limit=5", token)
            pages.append(answer.body + str(answer.headers).encode())
            following = int(answer.headers["Accord-Next-After"])
            if following == after:
                await asyncio.sleep(0.02)
            after = following
    return b"".join(pages)


async def live_bytes(url: str, token: str, events: int) -> bytes:
    """Every byte of the live stream from the start, until it has sent `events` events."""
    received = b""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/events/live?after=-1", headers=bearer(token)) as response,
        asyncio.timeout(10),
    ):
        received += str(response.headers).encode()
        async for raw in response.content:
            received += raw
            if received.count(b"\ndata: ") >= events:
                return received
    raise AssertionError("the live stream ended")


def test_a_scoped_stream_shows_a_revocation_without_its_reason_names_or_births(
    served: Served,
) -> None:
    revoked = revoke_sams_key(served)
    last = len(revoked.log) - 1

    scoped = asyncio.run(catch_up(served.url, revoked.school, last))
    received = asyncio.run(catch_up_bytes(served.url, revoked.school, last))
    received += asyncio.run(live_bytes(served.url, revoked.school, len(scoped.events)))

    for secret in who_people_are(served):
        assert secret.encode() not in received, secret
    [notice] = [e for e in scoped.events if e["type"] == "accord.key.revocation"]
    assert notice["data"] == {
        "kid": revoked.sam.author.kid,
        "revoked_at": read_entry(revoked.revocation.data).recorded_at,
        "compromised_since": revoked.compromised_since,
        "entryhash": revoked.revocation.hash,
    }
    assert notice["entryhash"] == revoked.revocation.hash
    assert notice["sequence"] == str(revoked.revocation.position)
    assert notice["subject"] == directory(served)
    assert scoped.events[-1]["type"] == "accord.key.bound"  # the new key, as it is
    assert not any(e["type"] == "accord.key.revoked" for e in scoped.events)


def test_an_unscoped_stream_still_carries_the_signed_revocation(served: Served) -> None:
    revoked = revoke_sams_key(served)

    everything = asyncio.run(catch_up(served.url, revoked.service, len(revoked.log) - 1))

    assert [e["entryhash"] for e in everything.events] == [e.hash for e in revoked.log]
    [event] = [e for e in everything.events if e["type"] == "accord.key.revoked"]
    assert canonical(event["data"]) == revoked.revocation.data
    assert event["data"]["statement"]["body"]["reason"] == REASON


def test_the_sdk_follows_a_scoped_stream_through_a_revocation_notice(served: Served) -> None:
    revoked = revoke_sams_key(served)
    events = asyncio.run(catch_up(served.url, revoked.school, len(revoked.log) - 1)).events
    entries = [e for e in events if e["type"] != "accord.key.revocation"]

    received = asyncio.run(subscribe(served.url, revoked.school, count=len(entries)))

    assert [r.cloudevent["entryhash"] for r in received] == [e["entryhash"] for e in entries]


def test_a_scoped_subscriber_refuses_what_a_revoked_key_signed_once_it_knows(
    served: Served,
) -> None:
    revoked = revoke_sams_key(served)
    events = asyncio.run(catch_up(served.url, revoked.school, len(revoked.log) - 1)).events
    # Sam's shared action, recorded after his key was compromised, delivered again as if new.
    action = next(e for e in events if e["entryhash"] == revoked.scenario.played.hash("action"))
    again = {**action, "sequence": str(int(events[-1]["sequence"]) + 1)}
    unaware = fresh_verifier(served)
    for event in events:
        if event["type"] != "accord.key.revocation":
            unaware.take(event, scoped=True)
    assert unaware.take(again, scoped=True) is not None  # without the notice it would pass

    verifier = fresh_verifier(served)
    taken = [verifier.take(event, scoped=True) for event in events]
    assert taken.count(None) == 1  # the notice, applied and not handed over
    with pytest.raises(Untrusted) as refused:
        verifier.take(again, scoped=True)
    assert f"was compromised from {revoked.compromised_since}" in refused.value.problem

    resumed = Verifier(served.record.authority_key, directory(served), after=len(events))
    for event in events:
        resumed.prime(event)
    resumed.position = int(events[-1]["sequence"])
    with pytest.raises(Untrusted):
        resumed.take(again, scoped=True)


def test_the_verifier_refuses_a_revocation_notice_it_cannot_place(served: Served) -> None:
    revoked = revoke_sams_key(served)
    events = asyncio.run(catch_up(served.url, revoked.school, len(revoked.log) - 1)).events
    index = next(i for i, e in enumerate(events) if e["type"] == "accord.key.revocation")
    notice = events[index]
    wrong = [
        ({**notice, "subject": revoked.scenario.played.case}, True),
        ({**notice, "data": {**notice["data"], "kid": "k" * 43}}, True),
        ({**notice, "data": {**notice["data"], "entryhash": "0" * 64}}, True),
        ({**notice, "data": {**notice["data"], "revoked_at": None}}, True),
        ({**notice, "data": {**notice["data"], "revoked_at": ""}}, True),
        ({**notice, "data": {**notice["data"], "compromised_since": "from the start"}}, True),
        (notice, False),  # an unscoped stream carries the signed entry instead
    ]
    for event, scoped in wrong:
        verifier = fresh_verifier(served)
        for earlier in events[:index]:
            verifier.take(earlier, scoped=True)
        with pytest.raises(Untrusted):
            verifier.take(event, scoped)


# -- live: /v1/events/live --------------------------------------------------------------------


def test_every_live_event_is_a_cloudevent_whose_id_is_its_position(served: Served) -> None:
    service = served_service(served)
    served.play_worked_case()
    log = sealed(served)
    stream = asyncio.run(live(served.url, service, "?after=-1", until=having(len(log))))
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert stream.headers["Accord-Scoped"] == "false"
    assert [position for position, _ in stream.events] == list(range(len(log)))
    for (position, raw), entry in zip(stream.events, log, strict=True):
        assert raw["sequence"] == str(position)
        assert_is_the_cloudevent_of(raw, entry)


def test_a_live_subscriber_receives_what_is_appended_after_it_connected(served: Served) -> None:
    service = served_service(served)
    before = sealed(served)

    async def run() -> tuple[Stream, int]:
        async with aiohttp.ClientSession() as session:
            response = await session.get(
                f"{served.url}/v1/events/live?after={len(before) - 1}", headers=bearer(service)
            )
            # Connected (the start is fixed before the answer's headers): now append.
            await asyncio.to_thread(served.person, "Late arrival")
            grown = await asyncio.to_thread(sealed, served)
            stream = await read_stream(response, lambda s: len(s.events) == 2)
            response.close()
            return stream, len(grown)

    stream, size = asyncio.run(run())
    assert size == len(before) + 2
    assert [position for position, _ in stream.events] == [len(before), len(before) + 1]
    assert [e["type"] for _, e in stream.events] == [
        "accord.person.registered",
        "accord.key.bound",
    ]


def test_a_live_subscriber_resumes_after_its_last_event_id(served: Served) -> None:
    service = served_service(served)
    served.play_worked_case()
    log = sealed(served)
    for last in (0, 5, len(log) - 3):
        wanted = len(log) - last - 1
        stream = asyncio.run(
            live(
                served.url,
                service,
                headers={"Last-Event-ID": str(last)},
                until=having(wanted),
            )
        )
        assert [p for p, _ in stream.events] == list(range(last + 1, len(log)))
        assert [e["entryhash"] for _, e in stream.events] == [e.hash for e in log[last + 1 :]]
    # Last-Event-ID wins over ?after=, as a reconnecting EventSource sends both.
    both = asyncio.run(
        live(
            served.url,
            service,
            "?after=0",
            headers={"Last-Event-ID": str(len(log) - 2)},
            until=having(1),
        )
    )
    assert [p for p, _ in both.events] == [len(log) - 1]


def test_live_takes_last_event_id_minus_one_as_the_beginning_like_after(served: Served) -> None:
    """The SDK resumes with `Last-Event-ID: <its position>`, which is -1 until a first event has
    been delivered (an empty or not yet sealed log, a scoped token that has seen nothing)."""
    service = served_service(served)
    log = sealed(served)
    stream = asyncio.run(
        live(
            served.url,
            service,
            headers={"Last-Event-ID": "-1"},
            until=having(len(log)),
        )
    )
    assert stream.status == 200, stream.body
    assert [p for p, _ in stream.events] == list(range(len(log)))


def test_a_subscriber_started_before_anything_is_sealed_receives_the_first_entries(
    tmp_path: Path, store_url: str
) -> None:
    """A freshly started server may not have sealed anything yet: the SDK must wait, not fail."""
    home = Home.create(tmp_path / "home", ORIGIN, store_url)

    async def run() -> list[Received]:
        async with running(home, port=0, follow=False) as server:  # no sealer of its own
            record = server.service.record
            service = await asyncio.to_thread(home.authority(record).register, "Events", "service")
            token = await asyncio.to_thread(issue, record, service, Scope.SERVICE)
            subscriber = asyncio.create_task(subscribe(server.url, token, count=2))
            await asyncio.sleep(0.5)  # it has found nothing to catch up on and gone live
            sealer = Sealer(record, home.ledger_key())
            try:
                assert await asyncio.to_thread(sealer.catch_up) == 3
            finally:
                sealer.log.close()
            return await subscriber

    received = asyncio.run(run())
    assert [r.position for r in received] == [0, 1]
    assert [r.entry.statement.kind for r in received] == ["person.registered", "key.bound"]


def test_an_idle_live_stream_sends_a_heartbeat_comment(tmp_path: Path, store_url: str) -> None:
    with serving(tmp_path, store_url, Settings(heartbeat=0.5)) as (served, feed):
        service = served_service(served)
        head = len(sealed(served)) - 1
        while feed.head < head:  # the live feed has read all there is
            time.sleep(0.01)
        started = time.monotonic()
        stream = asyncio.run(live(served.url, service, until=lambda s: len(s.comments) >= 2))
        elapsed = time.monotonic() - started
    assert stream.events == []  # it started at the head: nothing new, only heartbeats
    assert stream.comments == [b": heartbeat", b": heartbeat"]
    assert 0.9 <= elapsed < 5


def test_the_server_stops_promptly_after_a_live_subscriber_has_gone(
    tmp_path: Path, store_url: str
) -> None:
    """A live stream that lost its subscriber ends: it holds no connection until the next
    heartbeat (15 s by default) and does not hold up a restart."""
    home = Home.create(tmp_path / "home", ORIGIN, store_url)
    serving = serve_in_thread(home)
    server, running_ = serving.__enter__(), True
    try:
        record = server.service.record
        served = Served(server.url, home, record, home.authority(record))
        service = served_service(served)
        everything = len(sealed(served))
        stream = asyncio.run(live(server.url, service, "?after=-1", until=having(everything)))
        assert len(stream.events) == everything  # connected, idle, and now gone
        started = time.monotonic()
        running_ = False
        serving.__exit__(None, None, None)
        took = time.monotonic() - started
    finally:
        if running_:
            serving.__exit__(None, None, None)
    assert took < 5, f"the server took {took:.0f} s to stop"


def test_accord_serve_stops_promptly_on_sigterm_while_a_subscriber_is_connected(
    tmp_path: Path,
) -> None:
    home_path = tmp_path / "home"
    accord("--home", str(home_path), "init", "--origin", ORIGIN)
    home = Home.load(home_path)
    with home.open_ledger() as record:
        token = issue(record, home.authority(record).register("Events", "service"), Scope.SERVICE)
    server = Subprocess(home_path, free_port(), tmp_path / "server.log")

    async def run() -> float:
        await server.ready()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/v1/events/live?after=-1", headers=bearer(token)) as answer,
        ):
            assert answer.status == 200
            await answer.content.readline()  # connected and following
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            while server.process.poll() is None and time.monotonic() - started < 15:
                await asyncio.sleep(0.05)
            return time.monotonic() - started

    server.start()
    try:
        took = asyncio.run(run())
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
    assert took < 10, f"still running {took:.0f} s after SIGTERM"
    assert server.process is not None and server.process.returncode == 0


# -- live: a subscriber that takes nothing, and a feed nobody listens to ----------------------


def test_a_live_subscriber_that_takes_nothing_is_dropped_and_nobody_else_misses_anything(
    tmp_path: Path, store_url: str
) -> None:
    """The README's event stream: a subscriber that cannot take an event within `send_timeout`
    is disconnected, the others go on receiving every event, and it resumes where it was cut
    off."""
    with serving(tmp_path, store_url, Settings(send_timeout=0.5)) as (served, feed):
        service = served_service(served)
        lead, case = open_case(served)
        head = len(sealed(served)) - 1
        stalled = stalled_subscriber(served.url, service, after=head)
        try:

            async def run() -> tuple[Stream, list[Received], int, int]:
                last: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(
                        f"{served.url}/v1/events/live?after={head}", headers=bearer(service)
                    ) as response,
                ):
                    watching = asyncio.create_task(read_stream(response, through(last), 60))
                    verifying = asyncio.create_task(
                        subscribe(served.url, service, timeout=60, after=head, last=last)
                    )
                    await eventually(lambda: feed.listeners == 3, "three live subscribers")
                    await flood_until_one_is_dropped(served, feed, lead, case)
                    assert feed.listeners == 2
                    # Entries sealed after it was dropped, which it can only get by resuming.
                    flooded = len(await asyncio.to_thread(sealed, served)) - 1
                    last.set_result(flooded + 3)
                    await append_decisions(served.url, lead, case, 3)
                    return await watching, await verifying, flooded, last.result()

            watched, verified, flooded, last = asyncio.run(run())
            log = sealed(served)
            assert len(log) - 1 == last
            everything = list(range(head + 1, last + 1))
            hashes = [entry.hash for entry in log[head + 1 :]]
            assert [position for position, _ in watched.events] == everything
            assert [event["entryhash"] for _, event in watched.events] == hashes
            assert [received.position for received in verified] == everything
            assert [received.entry.hash for received in verified] == hashes
            # Read only now, the stalled connection delivers what had reached it and then ends:
            # the server has closed it.
            answer, ending = read_to_the_end(stalled, timeout=10)
        finally:
            stalled.close()
        assert ending in ("closed", "reset"), "the server still holds the stalled subscriber"
        cut = raw_stream(answer)
        assert cut.status == 200
        taken = [position for position, _ in cut.events]
        assert taken == list(range(head + 1, head + 1 + len(taken)))  # in order, no gap
        assert all(position <= flooded for position in taken)
        resume_after = taken[-1] if taken else head
        resumed = asyncio.run(
            live(
                served.url,
                service,
                headers={"Last-Event-ID": str(resume_after)},
                until=having(last - resume_after),
            )
        )
        assert [position for position, _ in resumed.events] == list(
            range(resume_after + 1, last + 1)
        )
        assert [event["entryhash"] for _, event in resumed.events] == [
            entry.hash for entry in log[resume_after + 1 :]
        ]


def test_a_dropped_live_subscribers_connection_is_closed_without_waiting_for_it_to_read(
    tmp_path: Path, store_url: str
) -> None:
    """Dropping a subscriber that takes nothing lets go of its connection and of what was queued
    for it at once: the server does not wait for the subscriber to read that first (one that
    never reads again would hold it for ever)."""
    with serving(tmp_path, store_url, Settings(send_timeout=0.5)) as (served, feed):
        service = served_service(served)
        lead, case = open_case(served)
        head = len(sealed(served)) - 1
        stalled = stalled_subscriber(served.url, service, after=head)
        try:

            async def run() -> None:
                await eventually(lambda: feed.listeners == 1, "the subscriber is connected")
                await flood_until_one_is_dropped(served, feed, lead, case)

            asyncio.run(run())
            assert feed.listeners == 0
            # Not a byte read from it: bytes sent on it must be refused (a reset) within 5 s.
            assert refuses_bytes(stalled, timeout=5), (
                "the server dropped the subscriber but keeps its connection open, with what it "
                "had queued, until the subscriber reads"
            )
        finally:
            stalled.close()


def test_a_late_live_subscriber_gets_every_entry_sealed_while_nobody_listened(
    tmp_path: Path, store_url: str
) -> None:
    with serving(tmp_path, store_url) as (served, feed):
        service = served_service(served)
        lead, case = open_case(served)
        asyncio.run(append_decisions(served.url, lead, case, 30))
        log = sealed(served)
        end, after = len(log) - 1, 3

        async def run() -> tuple[Stream, Stream, list[Receipt]]:
            await eventually(lambda: feed.head == end, "the feed follows the end of the log")
            assert feed.listeners == 0
            assert feed.recent(after) is None  # nothing was read for nobody
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{served.url}/v1/events/live?after={after}", headers=bearer(service)
                ) as response,
            ):
                assert response.status == 200
                caught_up = await read_stream(response, having(end - after))
                receipts = await append_decisions(served.url, lead, case, 1)
                new = await read_stream(response, having(1))
            return caught_up, new, receipts

        caught_up, new, [receipt] = asyncio.run(run())
    assert [position for position, _ in caught_up.events] == list(range(after + 1, end + 1))
    assert [event["entryhash"] for _, event in caught_up.events] == [
        entry.hash for entry in log[after + 1 :]
    ]
    assert [position for position, _ in new.events] == [end + 1]
    assert [event["entryhash"] for _, event in new.events] == [receipt.hash]


def test_a_live_subscriber_without_a_position_gets_only_what_is_sealed_after_it_connected(
    tmp_path: Path, store_url: str
) -> None:
    with serving(tmp_path, store_url) as (served, feed):
        service = served_service(served)
        lead, case = open_case(served)
        asyncio.run(append_decisions(served.url, lead, case, 30))
        end = len(sealed(served)) - 1

        async def run() -> Stream:
            await eventually(lambda: feed.head == end, "the feed follows the end of the log")
            assert feed.listeners == 0
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{served.url}/v1/events/live", headers=bearer(service)) as response,
            ):
                assert response.status == 200  # connected: its start is fixed before this
                await append_decisions(served.url, lead, case, 3)
                return await read_stream(response, having(3))

        stream = asyncio.run(run())
        log = sealed(served)
    assert len(log) == end + 4
    assert [position for position, _ in stream.events] == [end + 1, end + 2, end + 3]
    assert [event["entryhash"] for _, event in stream.events] == [e.hash for e in log[end + 1 :]]


def test_a_subscriber_that_left_resumes_gap_free_after_entries_sealed_while_nobody_listened(
    tmp_path: Path, store_url: str
) -> None:
    with serving(tmp_path, store_url) as (served, feed):
        service = served_service(served)
        lead, case = open_case(served)
        start = len(sealed(served))

        async def run() -> tuple[Stream, Stream, Stream, list[SealedEntry]]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{served.url}/v1/events/live?after=-1", headers=bearer(service)
                ) as response,
            ):
                await read_stream(response, having(start))
                # Sealed while it listens: the feed reads these into its ring.
                await append_decisions(served.url, lead, case, 5)
                before = await read_stream(response, having(5))
            await eventually(lambda: feed.listeners == 0, "the server notices it has gone")
            await append_decisions(served.url, lead, case, 30)  # while nobody listens
            log = await asyncio.to_thread(sealed, served)
            await eventually(lambda: feed.head == len(log) - 1, "the feed follows the end")
            left_at = before.events[-1][0]
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{served.url}/v1/events/live",
                    headers={**bearer(service), "Last-Event-ID": str(left_at)},
                ) as response,
            ):
                resumed = await read_stream(response, having(len(log) - 1 - left_at))
                await append_decisions(served.url, lead, case, 1)
                new = await read_stream(response, having(1))
            return before, resumed, new, await asyncio.to_thread(sealed, served)

        before, resumed, new, log = asyncio.run(run())
    left_at = start + 4
    assert [position for position, _ in before.events] == list(range(start, left_at + 1))
    assert [position for position, _ in resumed.events] == list(range(left_at + 1, len(log) - 1))
    assert [position for position, _ in new.events] == [len(log) - 1]
    delivered = before.events + resumed.events + new.events
    assert [event["entryhash"] for _, event in delivered] == [e.hash for e in log[start:]]


# -- the SDK's verifying subscriber -----------------------------------------------------------


def test_subscribe_yields_every_event_verified_in_position_order(served: Served) -> None:
    service = served_service(served)
    served.play_worked_case()
    log = sealed(served)
    received = asyncio.run(subscribe(served.url, service, count=len(log)))
    assert [r.position for r in received] == list(range(len(log)))
    assert [r.entry.hash for r in received] == [e.hash for e in log]
    assert [r.entry.data for r in received] == [e.data for e in log]


def test_a_scoped_subscriber_verifies_what_its_consent_lets_it_see(served: Served) -> None:
    scenario = play_with_sharing(served)
    school = served.token(
        served.person("School events", "service"), Scope.SERVICE, served.organisation(SCHOOL)
    )
    log = sealed(served)
    expected = asyncio.run(catch_up(served.url, school, last=len(log) - 1)).events
    received = asyncio.run(subscribe(served.url, school, count=len(expected)))
    assert [r.cloudevent["entryhash"] for r in received] == [e["entryhash"] for e in expected]
    shared = [r.entry.hash for r in received if r.entry.statement.stream == scenario.played.case]
    assert shared[0] == scenario.played.hash("consent:sharing")
    assert shared[-1] == scenario.played.hash("withdraw")


def test_a_subscriber_keeps_its_position_in_a_file_and_resumes_from_it(
    served: Served, tmp_path: Path
) -> None:
    service = served_service(served)
    served.play_worked_case()
    first = sealed(served)
    position_file = tmp_path / "position"
    received = asyncio.run(subscribe(served.url, service, len(first), position_file))
    assert position_file.read_text() == f"{len(first) - 1}\n"
    assert received[-1].position == len(first) - 1
    served.play_worked_case()  # a second case, by the same (already bound) people
    grown = sealed(served)
    resumed = asyncio.run(subscribe(served.url, service, len(grown) - len(first), position_file))
    assert [r.position for r in resumed] == list(range(len(first), len(grown)))
    assert [r.entry.hash for r in resumed] == [e.hash for e in grown[len(first) :]]
    assert position_file.read_text() == f"{len(grown) - 1}\n"
    assert position_file.stat().st_mode & 0o777 == 0o600


def test_a_subscriber_never_writes_its_position_through_a_symbolic_link(
    served: Served, tmp_path: Path
) -> None:
    service = served_service(served)
    served.play_worked_case()
    target = tmp_path / "elsewhere"
    target.write_text("-1\n")
    link = tmp_path / "position"
    link.symlink_to(target)
    with pytest.raises(SymlinkRefused):
        asyncio.run(subscribe(served.url, service, 1, link))
    assert target.read_text() == "-1\n"
    assert link.is_symlink()


Tamper = Callable[[dict[str, Any]], None]


def _rehash(event: dict[str, Any]) -> None:
    event["entryhash"] = hashlib.sha256(canonical(event["data"])).hexdigest()


def _alter_body(event: dict[str, Any]) -> None:
    event["data"]["statement"]["body"]["question"] = "Something nobody asked?"


def _alter_body_and_rehash(event: dict[str, Any]) -> None:
    _alter_body(event)
    _rehash(event)


def _alter_hash(event: dict[str, Any]) -> None:
    event["entryhash"] = "0" * 64


def _alter_subject(event: dict[str, Any]) -> None:
    event["subject"] = str(uuid.uuid4())


def _alter_prev_and_rehash(event: dict[str, Any]) -> None:
    event["data"]["prev"] = "1" * 64
    _rehash(event)


def _alter_seq_and_rehash(event: dict[str, Any]) -> None:
    event["data"]["seq"] += 1
    _rehash(event)


def _skip_a_position(event: dict[str, Any]) -> None:
    event["sequence"] = str(int(event["sequence"]) + 1)


def _sequence_not_a_number(event: dict[str, Any]) -> None:
    event["sequence"] = "next"


def _alter_signature_and_rehash(event: dict[str, Any]) -> None:
    sig = event["data"]["sig"]
    event["data"]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    _rehash(event)


@pytest.mark.parametrize(
    "tamper",
    [
        _alter_body,
        _alter_body_and_rehash,
        _alter_hash,
        _alter_subject,
        _alter_prev_and_rehash,
        _alter_seq_and_rehash,
        _skip_a_position,
        _sequence_not_a_number,
        _alter_signature_and_rehash,
    ],
)
def test_the_verifier_refuses_a_tampered_event(served: Served, tamper: Tamper) -> None:
    service = served_service(served)
    played = served.play_worked_case()
    log = sealed(served)
    batch = orjson.loads(asyncio.run(get(served.url, "/v1/events?limit=10000", service)).body)
    # The decision: in the middle of its case's chain (seq 8), signed by the lead.
    target = next(i for i, e in enumerate(batch) if e["entryhash"] == played.hash("decision"))
    verifier = fresh_verifier(served)
    for event in batch[:target]:
        verifier.check(event, scoped=False)  # the honest prefix verifies
    tamper(batch[target])
    with pytest.raises(Untrusted) as refused:
        verifier.check(batch[target], scoped=False)
    if batch[target]["sequence"].isdecimal():
        assert refused.value.position == int(batch[target]["sequence"])
    assert verifier.position == target - 1  # nothing of the tampered event was taken in
    assert len(log) > target


def test_the_verifier_refuses_a_replayed_event_and_a_directory_entry_not_by_the_authority(
    served: Served,
) -> None:
    service = served_service(served)
    served.play_worked_case()
    batch = orjson.loads(asyncio.run(get(served.url, "/v1/events?limit=10000", service)).body)
    verifier = fresh_verifier(served)
    for event in batch[:20]:
        verifier.check(event, scoped=False)
    with pytest.raises(Untrusted):
        verifier.check(batch[10], scoped=False)  # a repeat
    with pytest.raises(Untrusted):
        verifier.check(batch[10], scoped=True)  # a repeat, even to a scoped subscriber
    # A directory statement signed by a person's (bound, valid) key instead of the authority's.
    case_event = next(e for e in batch[20:] if e["subject"] != directory(served))
    forged = orjson.loads(orjson.dumps(case_event))
    forged["subject"] = forged["data"]["statement"]["stream"] = directory(served)
    _rehash(forged)
    with pytest.raises(Untrusted):
        verifier.check(forged, scoped=True)


IDENTITY = bytes([1]) + bytes(31)  # the identity point, as a public key
FORGED = bytes.fromhex("58" + "66" * 31) + (1).to_bytes(32, "little")  # R = B, S = 1


def _authority_signed(served: Served, event: dict[str, Any], body: dict[str, Any]) -> None:
    """Give a directory event another body, signed again by the authority."""
    statement = {**event["data"]["statement"], "body": body}
    signature = served.authority.key.sign(signing_input(canonical(statement)))
    event["data"] = {**event["data"], "statement": statement, "sig": b64url(signature)}
    _rehash(event)


def test_the_verifier_keeps_a_small_order_key_bound_but_trusts_nothing_signed_under_it(
    served: Served,
) -> None:
    """A binding of the identity point, signed by the authority (as a ledger that took any 32
    bytes as a key could hold), and the one signature that verifies under it for every message
    wherever small-order keys are let through."""
    service = served_service(served)
    served.play_worked_case()
    walter = served.person("Walter")
    sealed(served)
    batch = orjson.loads(asyncio.run(get(served.url, "/v1/events?limit=10000", service)).body)
    bound = batch[-1]
    assert bound["data"]["statement"]["kind"] == "key.bound"
    weak = keys.kid(IDENTITY)
    _authority_signed(
        served, bound, {"person": walter.person, "kid": weak, "public_key": b64url(IDENTITY)}
    )
    # A case entry, now Walter's in a stream of its own, signed with the forgery.
    case_event = next(e for e in reversed(batch) if e["subject"] != directory(served))
    forged = orjson.loads(orjson.dumps(case_event))
    stream = str(uuid.uuid4())
    forged["subject"] = stream
    forged["sequence"] = str(int(bound["sequence"]) + 1)
    forged["data"]["statement"].update(stream=stream, by=walter.person, kid=weak)
    forged["data"].update(seq=1, prev="0" * 64, sig=b64url(FORGED))
    _rehash(forged)
    verifier = fresh_verifier(served)
    for event in batch:
        verifier.check(event, scoped=False)
    assert verifier.keys[weak].unusable is not None

    with pytest.raises(Untrusted) as refused:
        verifier.check(forged, scoped=False)
    assert f"key {weak} is not a usable Ed25519 public key" in refused.value.problem


def test_the_verifier_refuses_a_directory_entry_whose_key_is_not_32_bytes(served: Served) -> None:
    service = served_service(served)
    walter = served.person("Walter")
    sealed(served)
    batch = orjson.loads(asyncio.run(get(served.url, "/v1/events?limit=10000", service)).body)
    bound = batch[-1]
    assert bound["data"]["statement"]["kind"] == "key.bound"
    body = {"person": walter.person, "kid": "k" * 43, "public_key": b64url(bytes(31))}
    _authority_signed(served, bound, body)
    verifier = fresh_verifier(served)
    for event in batch[:-1]:
        verifier.check(event, scoped=False)

    with pytest.raises(Untrusted) as refused:
        verifier.check(bound, scoped=False)
    assert "body does not parse" in refused.value.problem


def test_the_verifier_refuses_an_author_key_it_has_not_seen_bound(served: Served) -> None:
    service = served_service(served)
    played = served.play_worked_case()
    batch = orjson.loads(asyncio.run(get(served.url, "/v1/events?limit=10000", service)).body)
    case_events = [e for e in batch if e["subject"] == played.case]
    verifier = fresh_verifier(served)
    # A scoped subscriber that never saw the directory cannot trust a case entry.
    with pytest.raises(Untrusted) as refused:
        verifier.check(case_events[0], scoped=True)
    assert "not bound" in refused.value.problem


# -- the kill test ----------------------------------------------------------------------------

STATEMENTS = 2000
WRITERS = 4


def test_a_subscriber_gets_every_entry_once_in_order_across_a_server_killed_mid_stream(
    tmp_path: Path, store_url: str
) -> None:
    home_path = tmp_path / "home"
    accord("--home", str(home_path), "--store", store_url, "init", "--origin", ORIGIN)
    home = Home.load(home_path)
    with home.open_ledger() as record:
        authority = home.authority(record)
        lead_key, child = keys.generate(), authority.register("Kai", "child", born="2017-01-01")
        lead = authority.register("Dr Lee", "professional", profession="paediatrician")
        authority.bind(lead, lead_key.public_key())
        service = issue(record, authority.register("Events", "service"), Scope.SERVICE)
        directory_entries, directory_id = record.size(), record.directory_id
    author = Identity(ORIGIN, lead, lead_key)
    cases = [str(uuid.uuid4()) for _ in range(STATEMENTS)]
    submissions = [
        author.sign(case, "case.opened", {"child": child, "title": f"Case {n}", "lead": lead})
        for n, case in enumerate(cases)
    ]
    total = directory_entries + STATEMENTS
    lanes = [submissions[lane::WRITERS] for lane in range(WRITERS)]
    position_file = tmp_path / "position"
    server = Subprocess(home_path, free_port(), tmp_path / "server.log")
    try:
        server.start()
        outcome = asyncio.run(
            kill_partway(
                server, service, lanes, directory_entries, total, position_file, kill_at=700
            )
        )
    finally:
        server.stop()
    assert outcome.written == STATEMENTS
    assert 0 < outcome.received_at_kill < total  # the subscriber was mid-stream
    received = outcome.received
    assert [r.position for r in received] == list(range(total))  # no gap, no repeat
    assert {r.entry.statement.stream for r in received[:directory_entries]} == {str(directory_id)}
    streams = [r.entry.statement.stream for r in received[directory_entries:]]
    assert sorted(streams) == sorted(cases)
    for lane in range(WRITERS):  # each writer's statements in the order it posted them
        posted = cases[lane::WRITERS]
        members = set(posted)
        assert [stream for stream in streams if stream in members] == posted
    assert {r.entry.statement.kind for r in received[directory_entries:]} == {"case.opened"}
    assert len({r.entry.hash for r in received}) == total
    assert position_file.read_text() == f"{total - 1}\n"
    with home.open_ledger() as record:
        log = Log(record)
        try:
            assert [e.hash for e in log.entries(-1, total + 10)] == [r.entry.hash for r in received]
        finally:
            log.close()


# -- helpers ----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Stream:
    """What a live connection delivered: (id, CloudEvent) pairs and comment lines."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    comments: list[bytes] = field(default_factory=list)
    _id: bytes | None = None  # of the message being read
    _data: list[bytes] = field(default_factory=list)

    def take(self, raw: bytes) -> bool:
        """Take one line (id, data or comment); True at the blank line that ends a message."""
        line = raw.removesuffix(b"\n").removesuffix(b"\r")
        if line.startswith(b":"):
            self.comments.append(line)
        elif line.startswith(b"id:"):
            self._id = line[3:].removeprefix(b" ")
        elif line.startswith(b"data:"):
            self._data.append(line[5:].removeprefix(b" "))
        elif not line and self._data:
            assert self._id is not None, "every event carries its position as its id"
            self.events.append((int(self._id), orjson.loads(b"\n".join(self._data))))
            self._id, self._data = None, []
        return not line


@dataclass
class Scoped:
    events: list[dict[str, Any]]
    scoped: bool


@dataclass
class Scenario:
    """The worked case with statements of shared families added while sharing is in force and
    after the withdrawal, and a second case with no sharing consent."""

    played: Played
    in_force: list[Receipt]
    after_withdrawal: list[Receipt]
    unshared: str


def having(count: int) -> Callable[[Stream], bool]:
    """Until the stream has delivered `count` events."""
    return lambda stream: len(stream.events) >= count


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


async def get(url: str, path: str, token: str | None) -> Answer:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + path, headers=bearer(token)) as response,
    ):
        return Answer(response.status, dict(response.headers), await response.read())


async def catch_up(url: str, token: str, last: int, timeout: float = 10.0) -> Scoped:
    """Page through /v1/events until the pages have covered position `last` (a scoped token
    is served no further than the projections, so this may take a moment)."""
    events: list[dict[str, Any]] = []
    after, scoped = -1, False
    async with asyncio.timeout(timeout):
        while after < last:
            answer = await get(url, f"/v1/events?after={after}&limit=5", token)
            assert answer.status == 200, answer.body
            scoped = answer.headers["Accord-Scoped"] == "true"
            events += orjson.loads(answer.body)
            following = int(answer.headers["Accord-Next-After"])
            assert following >= after
            if following == after:
                await asyncio.sleep(0.02)
            after = following
    return Scoped(events, scoped)


async def live(
    url: str,
    token: str,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    until: Callable[[Stream], bool] = lambda stream: False,
    timeout: float = 10.0,
) -> Stream:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{url}/v1/events/live{query}", headers={**bearer(token), **(headers or {})}
        ) as response,
    ):
        if response.status != 200:
            return Stream(response.status, dict(response.headers), await response.read())
        return await read_stream(response, until, timeout)


async def read_stream(
    response: aiohttp.ClientResponse, until: Callable[[Stream], bool], timeout: float = 10.0
) -> Stream:
    """Read Server-Sent Events (id, data and comment lines) until `until` holds."""
    stream = Stream(response.status, dict(response.headers))
    async with asyncio.timeout(timeout):
        async for raw in response.content:
            if stream.take(raw) and until(stream):
                return stream
    raise AssertionError("the live stream ended")


async def subscribe(
    url: str,
    token: str,
    count: int | None = None,
    position_file: Path | None = None,
    timeout: float = 15.0,
    *,
    after: int = -1,
    last: asyncio.Future[int] | None = None,
) -> list[Received]:
    """What the SDK's verifying subscriber yields after `after`: `count` events, or every event
    through position `last` (which may become known while it runs)."""
    received: list[Received] = []
    async with AsyncClient(url, token) as client, asyncio.timeout(timeout):
        async for event in client.subscribe(after=after, position_file=position_file):
            received.append(event)
            if len(received) == count or reached(last, event.position):
                break
    return received


def assert_is_the_cloudevent_of(raw: dict[str, Any], sealed_entry: SealedEntry) -> None:
    """The event parses with the CloudEvents SDK and carries its entry exactly."""
    assert set(raw) == ATTRIBUTES
    event = JSONFormat().read(None, orjson.dumps(raw))
    assert isinstance(event, CloudEvent)
    entry = read_entry(sealed_entry.data)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == entry.statement.id
    assert event.get_source() == ORIGIN
    assert event.get_type() == f"accord.{entry.statement.kind}"
    assert event.get_subject() == entry.statement.stream == sealed_entry.stream
    assert raw["time"] == entry.recorded_at
    assert event.get_time() == datetime.fromisoformat(entry.recorded_at)
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("sequence") == str(sealed_entry.position)
    assert event.get_extension("entryhash") == hashlib.sha256(sealed_entry.data).hexdigest()
    data = event.get_data()
    assert isinstance(data, dict)
    assert canonical(data) == sealed_entry.data


def served_service(served: Served) -> str:
    """An unscoped service token."""
    return served.token(served.person("Events", "service"), Scope.SERVICE)


def directory(served: Served) -> str:
    return str(served.record.directory_id)


def sealed(served: Served, timeout: float = 10.0) -> list[SealedEntry]:
    """Every entry, once the server's sealer has given each its position."""
    log = Log(served.record)
    try:
        deadline = time.monotonic() + timeout
        while log.size() < served.record.size():
            assert time.monotonic() < deadline, "the sealer did not catch up"
            time.sleep(0.02)
        return log.entries(-1, 1_000_000)
    finally:
        log.close()


def fresh_verifier(served: Served) -> Verifier:
    return Verifier(served.record.authority_key, directory(served), after=-1)


def play_with_sharing(served: Served) -> Scenario:
    """The worked case; just before the withdrawal, and again after it, the lead opens a
    decision, the physiotherapist proposes and is given an action (families the consent
    lists); then a second case that shares nothing."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    people = {
        p.handle: served.person(
            p.name,
            p.kind,
            profession=p.profession,
            organisation=p.organisation,
            born=birth_date(start) if p.kind == "child" else None,
        )
        for p in CAST
    }
    case = str(uuid.uuid4())
    okafor, sam = people["okafor"], people["sam"]
    extra_decision = str(uuid.uuid4())

    def shared_families(decision: str | None) -> list[bytes]:
        submissions = []
        if decision is not None:
            body = {"decision": decision, "question": "Swimming?", "required": [okafor.person]}
            submissions.append(okafor.sign(case, "decision.opened", body))
        proposal = {"decision": extra_decision, "proposal": str(uuid.uuid4()), "title": "Pool"}
        action = {
            "decision": extra_decision,
            "action": str(uuid.uuid4()),
            "owner": sam.person,
            "due": (start.date() + timedelta(days=7)).isoformat(),
        }
        submissions.append(sam.sign(case, "proposal.made", proposal))
        submissions.append(sam.sign(case, "action.assigned", action))
        return submissions

    in_force: list[Receipt] = []
    with served.client() as client:

        def submit(data: bytes) -> Receipt:
            if parse_submission(data).statement.kind == "consent.withdrawn":
                for extra in shared_families(extra_decision):
                    in_force.append(client.submit(extra).receipt)
            return client.submit(data).receipt

        authors = {h: i.author for h, i in people.items()}
        played = play(case, authors, submit, start, served.organisation(SCHOOL))
        after = [client.submit(s).receipt for s in shared_families(str(uuid.uuid4()))]
        unshared = str(uuid.uuid4())
        body = {"child": people["amara"].person, "title": "Unshared", "lead": okafor.person}
        client.submit(okafor.sign(unshared, "case.opened", body))
    return Scenario(played, in_force, after, unshared)


@contextmanager
def serving(
    tmp_path: Path, store_url: str, settings: Settings | None = None
) -> Iterator[tuple[Served, Feed]]:
    """A fresh ledger served with `settings`, and the server's live feed (to wait on)."""
    home = Home.create(tmp_path / "home", ORIGIN, store_url)
    with serve_in_thread(home, settings) as server:
        record = server.service.record
        yield Served(server.url, home, record, home.authority(record)), server.service.feed


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Until `condition` holds; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.01)


def reached(last: asyncio.Future[int] | None, position: int) -> bool:
    """Whether `position` is the last one wanted, once that is known."""
    return last is not None and last.done() and position >= last.result()


def through(last: asyncio.Future[int]) -> Callable[[Stream], bool]:
    """Until the stream has delivered position `last` (which may become known while it reads)."""
    return lambda stream: bool(stream.events) and reached(last, stream.events[-1][0])


def open_case(served: Served) -> tuple[Identity, str]:
    """A case opened by its lead, who may then open decisions in it."""
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    child = served.person("Kai", "child", born="2017-01-01")
    case = str(uuid.uuid4())
    body = {"child": child.person, "title": "Followed live", "lead": lead.person}
    with served.client() as client:
        client.submit(lead.sign(case, "case.opened", body))
    return lead, case


# The longest texts a decision takes (4000 characters) in four-byte characters: with its
# question and context, an event of about 32 KB.
BULKY = "\U0001f33f" * 4000
ROUND = 32  # bulky decisions appended at once: about 1 MB of events
MAX_ROUNDS = 40


async def append_decisions(
    url: str, lead: Identity, case: str, count: int, bulky: bool = False
) -> list[Receipt]:
    """`count` decisions opened by the lead, posted at once through the API."""
    texts: dict[str, object] = {"question": BULKY, "context": BULKY} if bulky else {"question": "?"}
    async with AsyncClient(url) as writer:
        answers = await asyncio.gather(
            *(
                writer.submit(
                    lead.sign(
                        case,
                        "decision.opened",
                        {"decision": str(uuid.uuid4()), **texts, "required": [lead.person]},
                    )
                )
                for _ in range(count)
            )
        )
    return [answer.receipt for answer in answers]


async def flood_until_one_is_dropped(served: Served, feed: Feed, lead: Identity, case: str) -> None:
    """Append about 1 MB of events at a time until the server drops one of the live
    subscribers: for one that reads nothing, loopback's socket buffers (a few MB) fill up."""
    listening = feed.listeners
    for _ in range(MAX_ROUNDS):
        await append_decisions(served.url, lead, case, ROUND, bulky=True)
        if feed.listeners < listening:
            return
    raise AssertionError(f"no live subscriber was dropped after {MAX_ROUNDS} MB of events")


def stalled_subscriber(url: str, token: str, after: int) -> socket.socket:
    """A live subscriber that asks for the events after `after` and then reads nothing, with a
    receive buffer as small as the kernel allows. It asks in HTTP/1.0, so the answer's body is
    the bare event stream, without chunks."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
    connection.connect((address.hostname, address.port))
    request = f"GET /v1/events/live?after={after} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n"
    connection.sendall(request.encode())
    return connection


def read_to_the_end(connection: socket.socket, timeout: float) -> tuple[bytes, str]:
    """What the connection still delivers, and how it ends: "closed" (the peer closed it),
    "reset", or "open" (still open after `timeout` seconds)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            chunk = connection.recv(1 << 16)
            if not chunk:
                return b"".join(chunks), "closed"
            chunks.append(chunk)
    except ConnectionResetError:
        return b"".join(chunks), "reset"
    except TimeoutError:
        pass
    return b"".join(chunks), "open"


def raw_stream(answer: bytes) -> Stream:
    """The status and complete events of a raw HTTP/1.0 answer (a message cut off at the end
    is not one)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), answer[:200]
    stream = Stream(int(head.split()[1]), {})
    for line in body.splitlines(keepends=True):
        if line.endswith(b"\n"):
            stream.take(line)
    return stream


def refuses_bytes(connection: socket.socket, timeout: float) -> bool:
    """Whether the server's end of the connection is closed, seen without reading from it: a
    closed socket answers bytes sent to it with a reset, which becomes this socket's error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection.send(b"\r\n")
        except (ConnectionResetError, BrokenPipeError):
            return True
        error = connection.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error in (errno.ECONNRESET, errno.EPIPE):
            return True
        time.sleep(0.05)
    return False


# -- the kill test's processes ----------------------------------------------------------------

ACCORD = Path(sys.executable).with_name("accord")


def accord(*args: str) -> None:
    subprocess.run([str(ACCORD), *args], check=True, capture_output=True, env=_environment())


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("ACCORD_HOME", "ACCORD_STORE")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Subprocess:
    """`accord serve` in its own process, on a fixed port so it can be restarted in place."""

    def __init__(self, home: Path, port: int, log: Path) -> None:
        self.home, self.port, self.log = home, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:  # access lines go to stdout: never let a pipe fill
            self.process = subprocess.Popen(
                [str(ACCORD), "--home", str(self.home), "serve", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_environment(),
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    async def ready(self, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
            while True:
                assert self.process is not None and self.process.poll() is None, (
                    self.log.read_text()
                )
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)


@dataclass
class Outcome:
    received: list[Received]
    written: int
    received_at_kill: int


async def kill_partway(
    server: Subprocess,
    token: str,
    lanes: list[list[bytes]],
    sealed: int,
    total: int,
    position_file: Path,
    kill_at: int,
) -> Outcome:
    """Writers post every lane of submissions in order (retrying through the outage), a
    subscriber follows from once the first `sealed` entries are sealed, and the server is
    SIGKILLed once `kill_at` submissions are in, then started again."""
    await server.ready()
    written, received = [0], []

    async def write(lane: list[bytes]) -> None:
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for data in lane:
                while True:
                    try:
                        async with session.post(
                            f"{server.url}/v1/statements", data=data, headers=headers
                        ) as response:
                            body = await response.read()
                            if response.status in (200, 201):
                                break
                            assert response.status >= 500, body
                    except (aiohttp.ClientError, ConnectionError, TimeoutError):
                        pass  # the server is down: try again until it is back
                    await asyncio.sleep(0.05)
                written[0] += 1

    async def follow() -> None:
        async with AsyncClient(server.url, token) as client:
            async for event in client.subscribe(position_file=position_file):
                received.append(event)
                if len(received) == total:
                    return

    async def kill() -> int:
        while written[0] < kill_at:
            await asyncio.sleep(0.005)
        at_kill = len(received)
        await asyncio.to_thread(server.kill)
        server.start()
        await server.ready()
        return at_kill

    async with asyncio.timeout(120):  # a guard against hanging, not a measurement
        # Subscribe once the directory is sealed (see the Last-Event-ID -1 test for why).
        while len(orjson.loads((await get(server.url, "/v1/events", token)).body)) < sealed:
            await asyncio.sleep(0.05)
        follower = asyncio.create_task(follow())
        killer = asyncio.create_task(kill())
        await asyncio.gather(*(write(lane) for lane in lanes))
        at_kill = await killer
        await follower
    return Outcome(received, written[0], at_kill)
