"""Group commit: `Ledger.submit_many` answers every statement of a batch exactly as `submit`
would answer it in the order given, appends the ones that pass together, and leaves the
streams as one-by-one submission would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger import keys
from ledger.author import Author
from ledger.errors import LedgerError
from ledger.ledger import Accepted, Ledger
from ledger.statement import parse_submission
from tests.conftest import ORIGIN, World
from tests.twins import Answer, Twins, one_by_one, open_twins, outcome


def new_stream() -> str:
    return str(uuid.uuid4())


def forged(author: Author, stream: str) -> bytes:
    """A submission whose statement was changed after it was signed."""
    envelope = orjson.loads(author.submission(stream, "note.made", {"text": "signed"}))
    envelope["statement"]["body"]["text"] = "changed after signing"
    return orjson.dumps(envelope)


def accepted(answer: Answer) -> Accepted:
    assert isinstance(answer, Accepted), f"refused: {answer!r}"
    return answer


@pytest.fixture
def twins(store_url: str, tmp_path: Path) -> Iterator[Twins]:
    with open_twins(store_url, tmp_path) as opened:
        yield opened


# -- the property: a batch is answered and stored as one-by-one submission would be ----------


POOL = (
    "alice s0 a",
    "alice s0 b",
    "alice s1 a",
    "alice s1 b",
    "alice s2",
    "bob s0",
    "bob s1",
    "carol s1",
    "carol s2",
    "bind carol",
    "revoke bob",
    "register dan",
    "alice s0 a changed",
    "repeat earlier",
    "bad signature",
    "wrong ledger",
    "malformed json",
    "unknown key",
    "directory kind in s1, id of alice s2",
)


def pool(twins: Twins) -> tuple[list[str], dict[str, bytes]]:
    """Fresh streams s0, s1, s2 and the submissions named in `POOL`, good and bad, on them.

    Alice (the same in every example) and Bob (new each time) have bound keys; Carol is
    registered, but her key is bound only by "bind carol"; "revoke bob" revokes Bob's key.
    Stream s0 already holds one of Alice's statements, which "repeat earlier" sends again;
    "alice s0 a changed" reuses the id of "alice s0 a" with other content; the statement that
    puts a directory kind in a case stream (refused) has the id of "alice s2".
    """
    alice, bob = twins.person("Alice"), twins.person(f"Bob {uuid.uuid4()}")
    carol_id, registration = twins.registration("Carol")
    twins.both(registration)
    carol = Author(ORIGIN, carol_id, keys.generate())
    stranger = Author(ORIGIN, alice.person, keys.generate())  # a key nobody bound
    elsewhere = Author("other.example/accord", alice.person, alice.key)
    streams = [new_stream() for _ in range(3)]
    s0, s1, s2 = streams
    earlier = alice.submission(s0, "note.made", {"text": "earlier"})
    twins.both(earlier)
    first = alice.statement(s0, "note.made", {"text": "a"})
    on_s2 = alice.statement(s2, "note.made", {"text": "a"})
    submissions = {
        "alice s0 a": alice.sign(first),
        "alice s0 b": alice.submission(s0, "note.made", {"text": "b"}),
        "alice s1 a": alice.submission(s1, "note.made", {"text": "a"}),
        "alice s1 b": alice.submission(s1, "note.made", {"text": "b"}),
        "alice s2": alice.sign(on_s2),
        "bob s0": bob.submission(s0, "note.made", {"text": "bob"}),
        "bob s1": bob.submission(s1, "note.made", {"text": "bob"}),
        "carol s1": carol.submission(s1, "note.made", {"text": "carol"}),
        "carol s2": carol.submission(s2, "note.made", {"text": "carol"}),
        "bind carol": twins.binding(carol_id, carol.key.public_key()),
        "revoke bob": twins.directory("key.revoked", {"kid": bob.kid, "reason": "lost phone"}),
        "register dan": twins.registration("Dan")[1],
        "alice s0 a changed": alice.sign({**first, "body": {"text": "a, changed"}}),
        "repeat earlier": earlier,
        "bad signature": forged(alice, s2),
        "wrong ledger": elsewhere.submission(s1, "note.made", {}),
        "malformed json": b'{"statement": {"ledger": ',
        "unknown key": stranger.submission(s2, "note.made", {}),
        "directory kind in s1, id of alice s2": alice.submission(
            s1, "reviewer.appointed", {"person": alice.person}, statement_id=on_s2["id"]
        ),
    }
    assert tuple(submissions) == POOL
    return streams, submissions


def statements(ledger: Ledger, stream: uuid.UUID, after: int = 0) -> list[bytes]:
    return [entry.statement_bytes for entry in ledger.entries(stream, after=after)]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(names=st.lists(st.sampled_from(POOL), min_size=1, max_size=10))
# Every path of submit_many: repeats and a conflict within the batch, a repeat of an earlier
# statement, and each kind of refusal, around statements that pass on two streams.
@example(
    names=[
        "alice s0 a",
        "alice s0 a",
        "alice s1 a",
        "alice s0 a changed",
        "repeat earlier",
        "bad signature",
        "malformed json",
        "wrong ledger",
        "unknown key",
        "alice s0 b",
    ]
)
@example(names=["revoke bob", "bob s0"])  # a key revoked earlier in the batch
@example(names=["bind carol", "carol s1", "alice s1 a"])  # a statement that waits for its key
@example(names=["directory kind in s1, id of alice s2", "alice s2"])  # refused, then its id
def test_a_batch_is_answered_and_stored_as_one_by_one_submission_would_be(
    twins: Twins, names: list[str]
) -> None:
    streams, submissions = pool(twins)
    batch = [submissions[name] for name in names]
    directory = twins.batch.directory_id
    before = {
        ledger: (ledger.recorder.max_notification_id() or 0, ledger.stream(directory).version)
        for ledger in twins.ledgers
    }

    got = twins.batch.submit_many(batch)
    want = one_by_one(twins.single, batch)

    # Every answer is the one submit gives, statement by statement.
    assert list(zip(names, map(outcome, got), strict=True)) == list(
        zip(names, map(outcome, want), strict=True)
    )
    # Both ledgers hold the same statements in the same order, and every chain checks.
    for stream in map(uuid.UUID, streams):
        assert statements(twins.batch, stream) == statements(twins.single, stream)
    assert statements(twins.batch, directory, after=before[twins.batch][1]) == statements(
        twins.single, directory, after=before[twins.single][1]
    )
    # (The directory, which grows with every example, is re-checked only when it changed.)
    checked = list(map(uuid.UUID, streams))
    if any(outcome(answer)[:3] == ("accepted", True, str(directory)) for answer in got):
        checked.append(directory)
    for ledger in twins.ledgers:
        for stream in checked:
            ledger.check_stream(stream)
    # Each answer's receipt names the stored entry of exactly that statement; repeats name the
    # original entry; nothing else was written, and the rows written are those submit writes.
    created = set()
    for sent, answer in zip(batch, got, strict=True):
        if isinstance(answer, Accepted):
            receipt = answer.receipt
            entry = twins.batch.entry(uuid.UUID(receipt.stream), receipt.seq)
            assert entry.hash == receipt.hash
            assert entry.recorded_at == receipt.recorded_at
            assert entry.statement_bytes == parse_submission(sent).statement_bytes
            if answer.created:
                created.add((receipt.stream, receipt.seq, receipt.hash))
    log_before, _ = before[twins.batch]
    logged = {
        (str(item.stream), item.entry.seq, item.entry.hash)
        for item in twins.batch.read_log(after=log_before)
    }
    assert logged == created
    rows = [
        len(ledger.recorder.select_notifications(start=before[ledger][0] + 1, limit=10_000))
        for ledger in twins.ledgers
    ]
    assert rows[0] == rows[1]


# -- the cases the property covers, one by one, with the answers submit gives ------------------


def test_a_statement_signed_with_a_key_revoked_earlier_in_the_batch_is_refused(
    twins: Twins,
) -> None:
    bob = twins.person("Bob")
    stream = new_stream()
    batch = [
        twins.directory("key.revoked", {"kid": bob.kid, "reason": "lost phone"}),
        bob.submission(stream, "note.made", {"text": "signed after the revocation"}),
    ]

    got = twins.batch.submit_many(batch)
    want = one_by_one(twins.single, batch)

    assert [outcome(answer)[:2] for answer in want] == [
        ("accepted", True),
        ("rejected", "key_revoked"),
    ]
    assert [outcome(answer) for answer in got] == [outcome(answer) for answer in want]
    assert twins.batch.stream(uuid.UUID(stream)).version == 0


def test_a_statement_judged_alone_keeps_its_place_in_its_stream(twins: Twins) -> None:
    # Carol's statement can only be judged once her key is bound (a directory statement, so
    # judged alone); Alice's, after it in the batch, must still come after it in the stream.
    alice = twins.person("Alice")
    carol_id, registration = twins.registration("Carol")
    twins.both(registration)
    carol = Author(ORIGIN, carol_id, keys.generate())
    stream = new_stream()
    batch = [
        twins.binding(carol_id, carol.key.public_key()),
        carol.submission(stream, "note.made", {"text": "first"}),
        alice.submission(stream, "note.made", {"text": "second"}),
    ]

    got = twins.batch.submit_many(batch)
    want = one_by_one(twins.single, batch)

    assert [outcome(answer) for answer in want[1:]] == [
        ("accepted", True, stream, 1),
        ("accepted", True, stream, 2),
    ]
    assert [outcome(answer) for answer in got] == [outcome(answer) for answer in want]
    assert statements(twins.batch, uuid.UUID(stream)) == [
        parse_submission(data).statement_bytes for data in batch[1:]
    ]


def test_a_refused_statement_is_not_answered_as_a_conflict_with_a_later_one(
    twins: Twins,
) -> None:
    # Refused on its own merits, the first use of the id claims nothing: the second use, with
    # other content, is accepted, and the first still gets its own refusal, not a conflict.
    alice = twins.person("Alice")
    statement_id = str(uuid.uuid4())
    refused = alice.submission(
        new_stream(), "reviewer.appointed", {"person": alice.person}, statement_id=statement_id
    )
    later = alice.submission(new_stream(), "note.made", {}, statement_id=statement_id)

    got = twins.batch.submit_many([refused, later])
    want = one_by_one(twins.single, [refused, later])

    assert [outcome(answer)[:2] for answer in want] == [
        ("rejected", "not_permitted"),
        ("accepted", True),
    ]
    assert [outcome(answer) for answer in got] == [outcome(answer) for answer in want]


def test_a_repeat_in_the_batch_gets_the_first_receipt_and_a_changed_one_a_conflict(
    world: World,
) -> None:
    grace = world.person("Grace")
    stream = new_stream()
    statement = grace.statement(stream, "note.made", {"text": "once"})
    first = grace.sign(statement)
    changed = grace.sign({**statement, "body": {"text": "changed"}})
    other = grace.submission(stream, "note.made", {"text": "other"})

    answers = world.ledger.submit_many([first, first, changed, other])

    assert [outcome(answer) for answer in answers] == [
        ("accepted", True, stream, 1),
        ("accepted", False, stream, 1),
        ("rejected", "statement_conflict"),
        ("accepted", True, stream, 2),
    ]
    assert accepted(answers[1]).receipt == accepted(answers[0]).receipt
    assert world.reopen().check_stream(uuid.UUID(stream)) == 2


# -- one transaction --------------------------------------------------------------------------


def test_statements_that_pass_are_appended_together_in_batch_order(world: World) -> None:
    grace, daniel = world.person("Grace"), world.person("Daniel")
    streams = [new_stream(), new_stream()]
    batch = [
        grace.submission(streams[0], "note.made", {"n": 1}),
        daniel.submission(streams[1], "note.made", {"n": 1}),
        daniel.submission(streams[0], "note.made", {"n": 2}),
        grace.submission(streams[1], "note.made", {"n": 2}),
    ]
    appends: list[None] = []
    world.ledger.on_append(lambda: appends.append(None))
    log_before = world.ledger.recorder.max_notification_id() or 0

    answers = [accepted(answer) for answer in world.ledger.submit_many(batch)]

    assert [(a.created, a.receipt.stream, a.receipt.seq) for a in answers] == [
        (True, streams[0], 1),
        (True, streams[1], 1),
        (True, streams[0], 2),
        (True, streams[1], 2),
    ]
    assert len(appends) == 1  # one append: listeners are woken once for the whole batch
    logged = list(world.ledger.read_log(after=log_before))
    assert [entry.notification_id for entry in logged] == [a.notification_id for a in answers]
    assert [entry.entry.hash for entry in logged] == [a.receipt.hash for a in answers]
    for stream in streams:
        assert world.reopen().check_stream(uuid.UUID(stream)) == 2


def test_an_empty_batch_answers_nothing_and_a_batch_of_one_answers_as_submit(
    world: World,
) -> None:
    grace = world.person("Grace")
    stream = new_stream()
    assert world.ledger.submit_many([]) == []
    [refusal] = world.ledger.submit_many([forged(grace, stream)])
    assert isinstance(refusal, LedgerError)
    assert refusal.code == "signature_invalid"
    [one] = world.ledger.submit_many([grace.submission(stream, "note.made", {})])
    assert outcome(one) == ("accepted", True, stream, 1)


# -- another writer on the same store ----------------------------------------------------------


def test_a_batch_on_a_stream_another_instance_moved_on_is_judged_again(world: World) -> None:
    grace, daniel = world.person("Grace"), world.person("Daniel")
    moved, untouched = new_stream(), new_stream()
    # This instance caches `moved` at seq 1; another instance then appends seq 2 and 3.
    world.ledger.submit(grace.submission(moved, "note.made", {"n": 1}))
    written_elsewhere = [grace.submission(moved, "note.made", {"n": n}) for n in (2, 3)]
    other = world.reopen()
    try:
        elsewhere = [other.submit(data) for data in written_elsewhere]
    finally:
        other.close()
    batch = [
        grace.submission(moved, "note.made", {"n": 4}),
        daniel.submission(untouched, "note.made", {"n": 1}),
        daniel.submission(moved, "note.made", {"n": 5}),
        forged(grace, moved),
        written_elsewhere[0],
    ]

    answers = world.ledger.submit_many(batch)

    assert [outcome(answer) for answer in answers] == [
        ("accepted", True, moved, 4),
        ("accepted", True, untouched, 1),
        ("accepted", True, moved, 5),
        ("rejected", "signature_invalid"),
        ("accepted", False, moved, 2),
    ]
    assert accepted(answers[4]).receipt == elsewhere[0].receipt
    cold = world.reopen()
    assert cold.check_stream(uuid.UUID(moved)) == 5
    assert cold.check_stream(uuid.UUID(untouched)) == 1
    bodies = [
        orjson.loads(entry.statement_bytes)["body"] for entry in cold.entries(uuid.UUID(moved))
    ]
    assert bodies == [{"n": n} for n in range(1, 6)]
    # The instance's cached state follows the store again: the next batch chains on seq 5.
    [after] = world.ledger.submit_many([grace.submission(moved, "note.made", {"n": 6})])
    assert outcome(after) == ("accepted", True, moved, 6)
    assert world.reopen().check_stream(uuid.UUID(moved)) == 6


def test_a_statement_another_instance_recorded_is_a_repeat_inside_a_batch(world: World) -> None:
    grace = world.person("Grace")
    theirs, ours = new_stream(), new_stream()
    recorded = grace.submission(theirs, "note.made", {"text": "recorded elsewhere"})
    other = world.reopen()
    try:
        original = other.submit(recorded)
    finally:
        other.close()
    batch = [
        grace.submission(ours, "note.made", {"n": 1}),
        recorded,
        grace.submission(theirs, "note.made", {"n": 2}),
    ]

    answers = world.ledger.submit_many(batch)

    assert [outcome(answer) for answer in answers] == [
        ("accepted", True, ours, 1),
        ("accepted", False, theirs, 1),
        ("accepted", True, theirs, 2),
    ]
    assert accepted(answers[1]).receipt == original.receipt
    cold = world.reopen()
    assert cold.check_stream(uuid.UUID(theirs)) == 2
    assert cold.check_stream(uuid.UUID(ours)) == 1
