"""The ledger on each store: accepting, refusing without a trace, idempotency and key validity."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import orjson
import pytest

from ledger import keys
from ledger.author import Author
from ledger.authority import Authority
from ledger.canonical import MAX_DEPTH, canonical
from ledger.encoding import b64url
from ledger.entry import make_entry
from ledger.errors import IntegrityViolation, LedgerError
from ledger.statement import MAX_SUBMISSION_BYTES, signing_input
from tests.conftest import ORIGIN, World, fingerprint, tamper

RECORDED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def new_stream() -> str:
    return str(uuid.uuid4())


def test_an_accepted_statement_becomes_the_first_entry_of_its_stream(world: World) -> None:
    grace = world.person("Grace")
    stream = new_stream()

    accepted = world.ledger.submit(grace.submission(stream, "note.made", {"text": "hello"}))

    assert accepted.created
    receipt = accepted.receipt
    assert (receipt.stream, receipt.seq) == (stream, 1)
    assert RECORDED_AT.match(receipt.recorded_at)
    entry = world.ledger.entry(uuid.UUID(stream), 1)
    assert entry.hash == receipt.hash
    assert entry.prev == "0" * 64
    assert orjson.loads(entry.statement_bytes)["body"] == {"text": "hello"}


def test_each_entry_chains_to_the_previous_one_and_time_never_goes_back(world: World) -> None:
    grace = world.person("Grace")
    stream = new_stream()
    receipts = [
        world.ledger.submit(grace.submission(stream, "note.made", {"n": n})).receipt
        for n in range(5)
    ]

    entries = list(world.ledger.entries(uuid.UUID(stream)))

    assert [entry.seq for entry in entries] == [1, 2, 3, 4, 5]
    assert [entry.prev for entry in entries[1:]] == [receipt.hash for receipt in receipts[:-1]]
    stamps = [entry.recorded_at for entry in entries]
    assert stamps == sorted(stamps)
    assert world.reopen().check_stream(uuid.UUID(stream)) == 5


def test_the_stored_bytes_are_the_bytes_that_were_signed(world: World) -> None:
    grace = world.person("Grace")
    stream = new_stream()
    # Keys out of order and escapes in the text: the ledger canonicalises, never re-encodes.
    envelope = orjson.loads(grace.submission(stream, "note.made", {"z": 1, "a": "é\u2028"}))

    world.ledger.submit(orjson.dumps(envelope))

    entry = world.reopen().entry(uuid.UUID(stream), 1)
    assert entry.statement_bytes == orjson.dumps(envelope["statement"], option=orjson.OPT_SORT_KEYS)
    assert entry.sig == envelope["sig"]


def test_a_repeated_statement_returns_the_original_receipt_and_stores_nothing(
    world: World,
) -> None:
    grace = world.person("Grace")
    submission = grace.submission(new_stream(), "note.made", {"text": "once"})
    first = world.ledger.submit(submission)
    before = fingerprint(world.ledger)

    again = world.reopen().submit(submission)

    assert not again.created
    assert again.receipt == first.receipt
    assert fingerprint(world.ledger) == before


def test_a_repeat_still_gets_its_receipt_after_the_key_is_revoked(world: World) -> None:
    grace = world.person("Grace")
    submission = grace.submission(new_stream(), "note.made", {"text": "before revocation"})
    first = world.ledger.submit(submission)
    world.authority.revoke(grace.kid, "lost phone")

    assert world.ledger.submit(submission).receipt == first.receipt


# -- every rejection leaves the store exactly as it was -------------------------------------

Case = Callable[[World], bytes]


def malformed_json(world: World) -> bytes:
    return b'{"statement": {"ledger": '


def oversized(world: World) -> bytes:
    grace = world.person("Grace")
    return grace.submission(new_stream(), "note.made", {"text": "x" * MAX_SUBMISSION_BYTES})


def wrong_types(world: World) -> bytes:
    envelope = orjson.loads(world.person("Grace").submission(new_stream(), "note.made", {}))
    envelope["statement"]["by"] = 42
    return orjson.dumps(envelope)


def unknown_field(world: World) -> bytes:
    grace = world.person("Grace")
    statement = grace.statement(new_stream(), "note.made", {})
    statement["extra"] = "field"
    return grace.sign(statement)


def float_in_body(world: World) -> bytes:
    grace = world.person("Grace")
    envelope = orjson.loads(grace.submission(new_stream(), "note.made", {"n": 1}))
    envelope["statement"]["body"]["n"] = 1.5
    return orjson.dumps(envelope)


def nested(levels: int) -> Case:
    """A statement whose body nests `levels` deep, written out by hand (canonical() would not)."""

    def make(world: World) -> bytes:
        grace = world.person("Grace")
        statement = grace.statement(new_stream(), "note.made", {"x": "placeholder"})
        deep = b'{"x":' + b"[" * levels + b"]" * levels + b"}"
        text = orjson.dumps(statement, option=orjson.OPT_SORT_KEYS)
        text = text.replace(b'{"x":"placeholder"}', deep)
        return b'{"sig":"' + b"A" * 86 + b'","statement":' + text + b"}"

    make.__name__ = f"nested_{levels}_levels"
    return make


def named_stream_id(world: World) -> bytes:
    grace = world.person("Grace")
    return grace.submission(str(uuid.uuid5(uuid.NAMESPACE_DNS, "x")), "note.made", {})


def bad_signature(world: World) -> bytes:
    grace = world.person("Grace")
    statement = grace.statement(new_stream(), "note.made", {"text": "mine"})
    forged = orjson.loads(grace.sign(statement))
    forged["statement"]["body"]["text"] = "changed after signing"
    return orjson.dumps(forged)


def unknown_key(world: World) -> bytes:
    grace = world.person("Grace")
    stranger = Author(ORIGIN, grace.person, keys.generate())
    return stranger.submission(new_stream(), "note.made", {})


def someone_elses_key(world: World) -> bytes:
    grace, daniel = world.person("Grace"), world.person("Daniel")
    impostor = Author(ORIGIN, grace.person, daniel.key)
    return impostor.submission(new_stream(), "note.made", {})


def revoked_key(world: World) -> bytes:
    grace = world.person("Grace")
    world.authority.revoke(grace.kid, "left the clinic")
    return grace.submission(new_stream(), "note.made", {})


def wrong_ledger(world: World) -> bytes:
    grace = world.person("Grace")
    other = Author("other.example/accord", grace.person, grace.key)
    return other.submission(new_stream(), "note.made", {})


def conflicting_repeat(world: World) -> bytes:
    grace = world.person("Grace")
    statement = grace.statement(new_stream(), "note.made", {"text": "first"})
    world.ledger.submit(grace.sign(statement))
    statement["body"] = {"text": "second"}
    return grace.sign(statement)


def directory_write_by_a_member(world: World) -> bytes:
    grace = world.person("Grace")
    body = {"person": grace.person, "name": "Grace", "kind": "authority"}
    return grace.submission(str(world.ledger.directory_id), "person.registered", body)


def directory_kind_in_a_case(world: World) -> bytes:
    grace = world.person("Grace")
    return grace.submission(new_stream(), "reviewer.appointed", {"person": grace.person})


def key_bound_twice(world: World) -> bytes:
    grace = world.person("Grace")
    directory = str(world.ledger.directory_id)
    authority = Author(ORIGIN, world.ledger.directory().authority or "", world.authority_key)
    body = {
        "person": grace.person,
        "kid": grace.kid,
        "public_key": keys.public_key_b64(grace.key),
    }
    return authority.submission(directory, "key.bound", body)


def small_order_key_bound(world: World) -> bytes:
    # The identity point: a public key under which one signature verifies for any message
    # wherever small-order keys are let through.
    identity = bytes([1]) + bytes(31)
    grace = world.person("Grace")
    authority = Author(ORIGIN, world.ledger.directory().authority or "", world.authority_key)
    body = {"person": grace.person, "kid": keys.kid(identity), "public_key": b64url(identity)}
    return authority.submission(str(world.ledger.directory_id), "key.bound", body)


def duplicate_key(world: World) -> bytes:
    grace = world.person("Grace")
    signed = grace.submission(new_stream(), "note.made", {"text": "signed"})
    # A reader that keeps the first of two values would show "shown" instead of "signed".
    return signed.replace(b'"body":{', b'"body":{"text":"shown",', 1)


def another_authority_key(world: World) -> bytes:
    authority = world.ledger.directory().authority or ""
    second = keys.generate()
    world.authority.bind(authority, second.public_key())
    impostor = Author(ORIGIN, authority, second)
    body = {"person": str(uuid.uuid4()), "name": "Rogue", "kind": "adult"}
    return impostor.submission(str(world.ledger.directory_id), "person.registered", body)


def revoke_the_authority_key(world: World) -> bytes:
    authority = Author(ORIGIN, world.ledger.directory().authority or "", world.authority_key)
    body = {"kid": authority.kid, "reason": "tidy up"}
    return authority.submission(str(world.ledger.directory_id), "key.revoked", body)


REJECTIONS: list[tuple[Case, str]] = [
    (malformed_json, "malformed"),
    (duplicate_key, "malformed"),
    (another_authority_key, "not_permitted"),
    (revoke_the_authority_key, "not_permitted"),
    (oversized, "too_large"),
    (wrong_types, "malformed"),
    (unknown_field, "malformed"),
    (float_in_body, "malformed"),
    (named_stream_id, "malformed"),
    (bad_signature, "signature_invalid"),
    (unknown_key, "unknown_key"),
    (someone_elses_key, "unknown_key"),
    (revoked_key, "key_revoked"),
    (wrong_ledger, "wrong_ledger"),
    (conflicting_repeat, "statement_conflict"),
    (directory_write_by_a_member, "not_permitted"),
    (directory_kind_in_a_case, "not_permitted"),
    (key_bound_twice, "not_permitted"),
    (small_order_key_bound, "malformed"),
    (nested(MAX_DEPTH), "malformed"),  # inside the statement and its body: 66 levels
    (nested(252), "malformed"),  # would be stored, and then no entry reader could write it back
    (nested(5000), "malformed"),  # deeper than the parsers recurse
]


@pytest.mark.parametrize(
    ("make", "code"), REJECTIONS, ids=[case.__name__ for case, _ in REJECTIONS]
)
def test_a_rejected_submission_gets_its_code_and_leaves_no_trace(
    world: World, make: Case, code: str
) -> None:
    submission = make(world)
    before = fingerprint(world.ledger)

    with pytest.raises(LedgerError) as raised:
        world.ledger.submit(submission)

    assert raised.value.code == code
    assert raised.value.detail
    assert fingerprint(world.ledger) == before
    assert fingerprint(world.reopen()) == before


# -- keys over time ----------------------------------------------------------------------------


def test_a_key_compromised_in_the_past_invalidates_what_it_signed_since(world: World) -> None:
    grace = world.person("Grace")
    stream = new_stream()
    first = world.ledger.submit(grace.submission(stream, "note.made", {"n": 1})).receipt
    time.sleep(0.005)  # recorded_at has millisecond resolution
    second = world.ledger.submit(grace.submission(stream, "note.made", {"n": 2})).receipt
    assert first.recorded_at < second.recorded_at

    world.authority.revoke(grace.kid, "stolen laptop", compromised_since=second.recorded_at)

    with pytest.raises(IntegrityViolation) as raised:
        world.reopen().check_stream(uuid.UUID(stream))
    assert (raised.value.stream, raised.value.seq) == (stream, 2)
    assert "compromised" in raised.value.detail


def test_a_key_revoked_without_compromise_keeps_what_it_signed_before(world: World) -> None:
    grace = world.person("Grace")
    stream = new_stream()
    world.ledger.submit(grace.submission(stream, "note.made", {"n": 1}))

    world.authority.revoke(grace.kid, "replaced")

    assert world.reopen().check_stream(uuid.UUID(stream)) == 1


def test_a_new_key_bound_after_revocation_signs_again(world: World) -> None:
    grace = world.person("Grace")
    world.authority.revoke(grace.kid, "replaced")
    replacement = keys.generate()
    world.authority.bind(grace.person, replacement.public_key())

    renewed = Author(ORIGIN, grace.person, replacement)
    assert world.ledger.submit(renewed.submission(new_stream(), "note.made", {})).created


def test_the_directory_resolves_which_key_was_valid_when(world: World) -> None:
    grace = world.person("Grace")
    world.authority.revoke(grace.kid, "replaced")
    record = world.reopen().directory().keys[grace.kid]

    assert record.person == grace.person
    assert record.revoked_at is not None
    assert record.problem_at(record.bound_at) is None
    assert record.problem_at(record.revoked_at) is not None
    assert record.problem_at("2000-01-01T00:00:00.000Z") is not None  # before it was bound


def test_the_whole_directory_checks_out(world: World) -> None:
    world.person("Grace")
    world.person("Daniel")
    assert world.reopen().check_stream(world.ledger.directory_id) == 2 + 2 * 2


# -- a key no signature verifies under ---------------------------------------------------------

IDENTITY = bytes([1]) + bytes(31)  # the identity point, as a public key
# R the base point and S = 1: under the identity point, a signature of every message wherever
# small-order keys are let through (OpenSSL's verify does).
FORGED = bytes.fromhex("58" + "66" * 31) + (1).to_bytes(32, "little")


def plant_identity_binding(world: World) -> tuple[str, str]:
    """Register Walter and bind him a key, then overwrite that binding in the store with one of
    the identity point, signed by the authority: what a ledger that took any 32 bytes as a key
    would hold. Returns Walter's person id and the planted kid."""
    walter = world.authority.register("Walter", "adult")
    world.authority.bind(walter, keys.generate().public_key())
    directory = world.ledger.directory_id
    binding = world.ledger.entry(directory, world.ledger.directory().version)
    statement = orjson.loads(binding.statement_bytes)
    statement["body"].update(kid=keys.kid(IDENTITY), public_key=b64url(IDENTITY))
    statement_bytes = canonical(statement)
    sig = b64url(world.authority_key.sign(signing_input(statement_bytes)))
    planted = make_entry(statement_bytes, sig, binding.seq, binding.prev, binding.recorded_at)
    tamper(world.ledger.store.url, directory, binding.seq, planted.data)
    return walter, keys.kid(IDENTITY)


def test_a_stored_binding_of_a_small_order_key_is_kept_but_nothing_verifies_under_it(
    world: World,
) -> None:
    grace = world.person("Grace")
    walter, weak = plant_identity_binding(world)
    ledger = world.reopen()

    record = ledger.directory().keys[weak]
    assert record.person == walter
    assert record.unusable is not None and "small-order" in record.unusable
    # The rest of the ledger works as before.
    ledger.submit(grace.submission(new_stream(), "note.made", {"text": "still here"}))

    impostor = Author(ORIGIN, walter, keys.generate())
    statement = impostor.statement(new_stream(), "note.made", {"text": "forged"})
    statement["kid"] = weak
    forged = orjson.dumps({"statement": statement, "sig": b64url(FORGED)})
    before = fingerprint(ledger)
    with pytest.raises(LedgerError) as refused:
        ledger.submit(forged)
    assert refused.value.code == "unknown_key"
    assert f"key {weak} is not a usable Ed25519 public key" in refused.value.detail
    assert fingerprint(ledger) == before

    entry = make_entry(
        canonical(statement), b64url(FORGED), 1, "0" * 64, "2026-01-30T10:00:00.000Z"
    )
    authority = world.authority_key.public_key()
    problem = ledger.directory().entry_problem(entry, authority, keys.kid(authority))
    assert problem == f"key {weak} is {record.unusable}"

    Authority(ledger, world.authority_key).revoke(weak, "not a usable key")
    assert ledger.directory().keys[weak].revoked_at is not None
