"""Entries and chains: exact bytes, verbatim statements, tamper-evident streams."""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import keys
from ledger.author import Author
from ledger.canonical import canonical, loads
from ledger.clock import Clock, format_recorded, normalise, parse_timestamp
from ledger.encoding import b64url
from ledger.entry import GENESIS_PREV, Entry, make_entry, read_entry
from ledger.errors import IntegrityViolation, Malformed
from ledger.statement import sign
from ledger.stream import Stream

ORIGIN = "clinic.example/accord"
KEY = keys.generate()
AUTHOR = Author(ORIGIN, str(uuid.uuid4()), KEY)
RECORDED = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")
T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)

# Printable ASCII that JSON writes as itself: replacing one such character by another changes
# exactly one byte of the canonical encoding.
SAFE = [chr(code) for code in range(0x20, 0x7F) if chr(code) not in '"\\']


def signed(stream: str, body: dict[str, Any], kind: str = "opinion.given") -> tuple[bytes, str]:
    """Canonical statement bytes and their signature, as a ledger would receive them."""
    document = AUTHOR.statement(stream, kind, body, at="2026-11-21T09:00:00Z")
    envelope = sign(document, KEY)
    return canonical(envelope["statement"]), envelope["sig"]


def reference_entry_bytes(
    statement: dict[str, Any], sig: str, seq: int, prev: str, recorded_at: str
) -> bytes:
    document: dict[str, Any] = {
        "statement": statement,
        "sig": sig,
        "seq": seq,
        "prev": prev,
        "recorded_at": recorded_at,
    }
    return bytes(rfc8785.dumps(document))


# --- round trip --------------------------------------------------------------------------------

_ascii_keys = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=10),
    st.sampled_from(["statement", "sig", "seq", "prev", "recorded_at", ',"statement":']),
)
_json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
        st.text(max_size=10),
        st.sampled_from([',"statement":', '","statement":{', "}", "\u2028", "😀"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_ascii_keys, children, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.dictionaries(_ascii_keys, _json_values, max_size=5)
# Entry text fields: realistic values, and arbitrary text that might confuse a byte-level reader.
_hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
_any_text = st.one_of(st.text(max_size=20), st.just(',"statement":{"a":1}'), st.just(""))
_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(
    body=_bodies,
    seq=st.integers(min_value=1, max_value=2**53 - 1),
    prev=st.one_of(st.just(GENESIS_PREV), _hex64),
    recorded_at=_times.map(format_recorded),
    sig=st.one_of(st.binary(min_size=64, max_size=64).map(b64url), _any_text),
)
def test_an_entry_reads_back_exactly_as_it_was_made(
    body: dict[str, Any], seq: int, prev: str, recorded_at: str, sig: str
) -> None:
    document = AUTHOR.statement(str(uuid.uuid4()), "opinion.given", body)
    statement_bytes = canonical(document)

    made = make_entry(statement_bytes, sig, seq, prev, recorded_at)
    read = read_entry(made.data)

    assert made.data == reference_entry_bytes(document, sig, seq, prev, recorded_at)
    assert (read.data, read.seq, read.prev, read.recorded_at, read.sig) == (
        made.data,
        seq,
        prev,
        recorded_at,
        sig,
    )
    assert read.statement_bytes == statement_bytes
    # A verbatim slice: canonical order puts "statement" last, so it ends just before the "}".
    assert made.data[-len(statement_bytes) - 1 : -1] == statement_bytes
    assert read.statement.body == body
    assert read.hash == made.hash == hashlib.sha256(made.data).hexdigest()
    assert re.fullmatch("[0-9a-f]{64}", read.hash)


def test_statement_bytes_are_sliced_exactly_when_the_body_has_keys_named_like_entry_fields() -> (
    None
):
    body = {
        "statement": {"statement": ',"statement":{"sig":"x"}', "seq": 1},
        "sig": "not the sig",
        "prev": ',"statement":',
    }
    statement_bytes, sig = signed(str(uuid.uuid4()), body)
    assert statement_bytes.count(b'"statement":') == 2

    read = read_entry(
        make_entry(statement_bytes, sig, 3, "a" * 64, "2026-11-21T10:00:00.000Z").data
    )
    assert read.statement_bytes == statement_bytes
    assert read.statement.body == body
    assert read.sig == sig
    assert read.signature_valid(KEY.public_key())


def test_an_entry_signature_verifies_with_the_authors_key_only() -> None:
    statement_bytes, sig = signed(str(uuid.uuid4()), {"text": "agree"})
    entry = read_entry(
        make_entry(statement_bytes, sig, 1, GENESIS_PREV, "2026-11-21T10:00:00.000Z").data
    )
    assert entry.signature_valid(KEY.public_key())
    assert not entry.signature_valid(keys.generate().public_key())


@pytest.mark.parametrize(
    "bad_sig", ["", "!!!", b64url(bytes(64)) + "="], ids=["empty", "bang", "padded"]
)
def test_an_entry_with_an_undecodable_signature_is_simply_not_valid(bad_sig: str) -> None:
    statement_bytes, _ = signed(str(uuid.uuid4()), {})
    entry = make_entry(statement_bytes, bad_sig, 1, GENESIS_PREV, "2026-11-21T10:00:00.000Z")
    assert not entry.signature_valid(KEY.public_key())


def test_the_statement_of_an_entry_is_validated_when_read() -> None:
    statement_bytes = canonical({"not": "a statement"})
    entry = read_entry(
        make_entry(statement_bytes, "s", 1, GENESIS_PREV, "2026-11-21T10:00:00.000Z").data
    )
    with pytest.raises(Malformed):
        _ = entry.statement


# --- rejected entry bytes ----------------------------------------------------------------------

_STATEMENT_BYTES, _SIG = signed(str(uuid.uuid4()), {"text": "agree"})
_STATEMENT = loads(_STATEMENT_BYTES)
_FIELDS: dict[str, Any] = {
    "statement": _STATEMENT,
    "sig": _SIG,
    "seq": 1,
    "prev": GENESIS_PREV,
    "recorded_at": "2026-11-21T10:00:00.000Z",
}
_GOOD = make_entry(_STATEMENT_BYTES, _SIG, 1, GENESIS_PREV, "2026-11-21T10:00:00.000Z").data


def _fields(**changes: Any) -> bytes:
    document = {**_FIELDS, **changes}
    return orjson.dumps(
        {name: value for name, value in document.items() if value is not ...},
        option=orjson.OPT_SORT_KEYS,
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_GOOD.replace(b",", b", ", 1), id="space-after-comma"),
        pytest.param(b" " + _GOOD, id="leading-space"),
        pytest.param(_GOOD + b"\n", id="trailing-newline"),
        pytest.param(orjson.dumps(loads(_GOOD), option=orjson.OPT_INDENT_2), id="indented"),
        pytest.param(orjson.dumps(_FIELDS), id="reordered-keys"),
        pytest.param(
            make_entry(
                orjson.dumps(dict(reversed(_STATEMENT.items()))),
                _SIG,
                1,
                GENESIS_PREV,
                "2026-11-21T10:00:00.000Z",
            ).data,
            id="statement-keys-unsorted",
        ),
        pytest.param(
            make_entry(
                _STATEMENT_BYTES.replace(b":", b": ", 1),
                _SIG,
                1,
                GENESIS_PREV,
                "2026-11-21T10:00:00.000Z",
            ).data,
            id="statement-with-whitespace",
        ),
        pytest.param(_GOOD.replace(b'"seq"', b'"\\u0073eq"'), id="escaped-key"),
        pytest.param(_GOOD.replace(b'"sig":"', b'"sig":"\\u0041', 1), id="needless-escape"),
        pytest.param(_GOOD.replace(b'"seq":1', b'"seq":1.0'), id="seq-float"),
        pytest.param(_GOOD.replace(b'"seq":1', b'"seq":01'), id="seq-leading-zero"),
        pytest.param(_GOOD.replace(b'"seq":1', b'"seq":1,"seq":1'), id="duplicate-key"),
        pytest.param(_fields(note="x"), id="extra-field"),
        pytest.param(_fields(Seq=1), id="extra-miscased-field"),
        *(pytest.param(_fields(**{name: ...}), id=f"missing-{name}") for name in _FIELDS),
        pytest.param(_fields(seq="1"), id="seq-string"),
        pytest.param(_fields(seq=True), id="seq-bool"),
        pytest.param(_fields(seq=None), id="seq-null"),
        pytest.param(_fields(prev=0), id="prev-int"),
        pytest.param(_fields(prev=None), id="prev-null"),
        pytest.param(_fields(recorded_at=1795000000000), id="recorded-at-int"),
        pytest.param(_fields(seq=0), id="seq-zero"),
        pytest.param(_fields(prev="0" * 63), id="prev-short"),
        pytest.param(_fields(prev="A" * 64), id="prev-uppercase"),
        pytest.param(_fields(recorded_at="2026-11-21T10:00:00Z"), id="recorded-at-no-millis"),
        pytest.param(_fields(recorded_at="2026-11-21T10:00:00.000Z\n"), id="recorded-at-newline"),
        pytest.param(_fields(sig=[1, 2]), id="sig-list"),
        pytest.param(_fields(sig={"a": 1}), id="sig-object"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"entry"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"", id="empty"),
        pytest.param(_GOOD[:-1], id="truncated"),
        # Nested past what orjson writes back (255 levels), or past what it reads (1,024).
        pytest.param(_GOOD[:-1] + b',"x":' + b"[" * 260 + b"]" * 260 + b"}", id="nested-260"),
        pytest.param(_GOOD[:-1] + b',"x":' + b"[" * 2000 + b"]" * 2000 + b"}", id="nested-2000"),
    ],
)
def test_read_entry_refuses_anything_but_an_exact_canonical_entry(data: bytes) -> None:
    assert data != _GOOD
    with pytest.raises(Malformed) as excinfo:
        read_entry(data)
    assert excinfo.value.code == "malformed"


def test_the_well_formed_entry_used_above_is_accepted() -> None:
    assert _fields() == _GOOD
    assert read_entry(_GOOD).statement_bytes == _STATEMENT_BYTES


# --- chains ------------------------------------------------------------------------------------


def build_chain(stream: uuid.UUID, bodies: Sequence[dict[str, Any]]) -> list[Entry]:
    """Entries as a ledger records them: each one's prev is the hash of the one before."""
    ticks = iter(T0 + timedelta(milliseconds=7 * index) for index in range(len(bodies)))
    clock = Clock(now=lambda: next(ticks))
    chain: list[Entry] = []
    prev = GENESIS_PREV
    for seq, body in enumerate(bodies, start=1):
        statement_bytes, sig = signed(str(stream), body)
        entry = read_entry(make_entry(statement_bytes, sig, seq, prev, clock.next()).data)
        chain.append(entry)
        prev = entry.hash
    return chain


def replay(stream: uuid.UUID, entries: Sequence[Entry]) -> Stream:
    state = Stream(stream)
    for entry in entries:
        state.apply(entry)
    return state


_chain_bodies = st.lists(
    st.dictionaries(
        st.sampled_from(["text", "n", "who"]),
        st.one_of(st.text(alphabet=SAFE, min_size=1, max_size=8), st.integers(0, 99)),
        max_size=3,
    ),
    min_size=1,
    max_size=30,
)


def string_leaves(entry: Entry) -> list[tuple[str, ...]]:
    """Paths to every non-empty string value in an entry (entry fields and statement values)."""
    paths: list[tuple[str, ...]] = [(name,) for name in ("sig", "prev", "recorded_at")]

    def walk(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        if isinstance(value, str) and value:
            yield path
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, (*path, key))

    paths.extend(walk(loads(entry.statement_bytes), ("statement",)))
    return paths


def change_one_character(entry: Entry, path: tuple[str, ...], position: int, new: str) -> Entry:
    """The same entry with one character of one string value replaced, re-read from bytes."""
    fields: dict[str, Any] = {
        "statement": loads(entry.statement_bytes),
        "sig": entry.sig,
        "prev": entry.prev,
        "recorded_at": entry.recorded_at,
    }
    tampered = copy.deepcopy(fields)
    holder = tampered
    for key in path[:-1]:
        holder = holder[key]
    old: str = holder[path[-1]]
    holder[path[-1]] = old[:position] + new + old[position + 1 :]
    data = make_entry(
        canonical(tampered["statement"]),
        tampered["sig"],
        entry.seq,
        tampered["prev"],
        tampered["recorded_at"],
    ).data
    return read_entry(data)


@settings(max_examples=60, deadline=None)
@given(_chain_bodies)
def test_an_untouched_chain_replays_to_its_last_hash(bodies: list[dict[str, Any]]) -> None:
    stream = uuid.uuid4()
    chain = build_chain(stream, bodies)
    state = replay(stream, chain)
    assert state.version == len(chain)
    assert state.head == chain[-1].hash
    assert state.recorded_at == chain[-1].recorded_at
    assert all(entry.signature_valid(KEY.public_key()) for entry in chain)


@settings(max_examples=150, deadline=None)
@given(_chain_bodies, st.data())
def test_changing_one_byte_of_any_string_value_in_a_chain_is_detected(
    bodies: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = uuid.uuid4()
    chain = build_chain(stream, bodies)
    index = data.draw(st.integers(min_value=0, max_value=len(chain) - 1), label="index")
    original = chain[index]
    path = data.draw(st.sampled_from(string_leaves(original)), label="path")
    value: Any = loads(original.data)
    for key in path:
        value = value[key]
    position = data.draw(
        st.sampled_from([i for i, char in enumerate(value) if char in SAFE]), label="position"
    )
    new = data.draw(st.sampled_from([char for char in SAFE if char != value[position]]))
    try:
        tampered_entry = change_one_character(original, path, position, new)
    except Malformed:
        # prev or recorded_at no longer in their fixed format: refused as soon as it is read.
        assert path in (("prev",), ("recorded_at",))
        return

    # The tampering is what it claims to be: one byte of the stored entry, nothing else.
    assert len(tampered_entry.data) == len(original.data)
    assert sum(a != b for a, b in zip(tampered_entry.data, original.data, strict=True)) == 1

    tampered = [*chain[:index], tampered_entry, *chain[index + 1 :]]
    if index < len(chain) - 1 or path == ("prev",):
        # The next entry's prev commits to this entry's hash; an entry's own prev must be the
        # hash before it. Either way the replay stops.
        with pytest.raises((IntegrityViolation, Malformed)):
            replay(stream, tampered)
        return

    # The last entry is vouched for by nothing after it: a chain replayed on its own cannot tell
    # a changed last entry from an honest one (a recorded_at moved forwards replays cleanly).
    # What does expose it is what a checkpoint or Merkle root commits to, the head hash; and a
    # change inside the signed statement or the signature breaks the author's signature.
    try:
        state = replay(stream, tampered)
    except (IntegrityViolation, Malformed):
        return
    assert state.version == len(chain)
    assert state.head != chain[-1].hash
    if path[0] in ("statement", "sig"):
        assert not tampered_entry.signature_valid(KEY.public_key())


def test_moving_the_last_recorded_at_forwards_is_invisible_to_the_chain_alone() -> None:
    # Documents the limit stated above, so nobody mistakes the chain for more than it is.
    stream = uuid.uuid4()
    chain = build_chain(stream, [{"n": 1}, {"n": 2}])
    last = chain[-1]
    later = read_entry(
        make_entry(
            last.statement_bytes, last.sig, last.seq, last.prev, "2027-01-01T00:00:00.000Z"
        ).data
    )
    state = replay(stream, [chain[0], later])
    assert state.head != last.hash
    assert later.signature_valid(KEY.public_key())


@settings(max_examples=100, deadline=None)
@given(_chain_bodies, st.data())
def test_deleting_any_entry_is_detected(bodies: list[dict[str, Any]], data: st.DataObject) -> None:
    stream = uuid.uuid4()
    chain = build_chain(stream, bodies)
    index = data.draw(st.integers(min_value=0, max_value=len(chain) - 1), label="index")
    tampered = chain[:index] + chain[index + 1 :]
    if index < len(chain) - 1:
        with pytest.raises(IntegrityViolation) as excinfo:
            replay(stream, tampered)
        assert excinfo.value.seq == index + 1
        return
    # Dropping the last entry leaves a shorter chain that is valid on its own: only a known
    # head or length (a checkpoint) shows the truncation.
    state = replay(stream, tampered)
    assert state.version == len(chain) - 1
    assert state.head != chain[-1].hash


@settings(max_examples=100, deadline=None)
@given(_chain_bodies.filter(lambda bodies: len(bodies) >= 2), st.data())
def test_swapping_any_two_entries_is_detected(
    bodies: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = uuid.uuid4()
    chain = build_chain(stream, bodies)
    first = data.draw(st.integers(min_value=0, max_value=len(chain) - 2), label="first")
    second = data.draw(st.integers(min_value=first + 1, max_value=len(chain) - 1), label="second")
    tampered = list(chain)
    tampered[first], tampered[second] = tampered[second], tampered[first]
    with pytest.raises(IntegrityViolation) as excinfo:
        replay(stream, tampered)
    assert excinfo.value.seq == first + 1
    assert excinfo.value.stream == str(stream)


def test_a_chain_from_another_stream_is_refused() -> None:
    chain = build_chain(uuid.uuid4(), [{"n": 1}])
    with pytest.raises(IntegrityViolation, match="another stream"):
        replay(uuid.uuid4(), chain)


def test_a_first_entry_must_point_at_the_genesis_hash() -> None:
    stream = uuid.uuid4()
    statement_bytes, sig = signed(str(stream), {})
    entry = make_entry(statement_bytes, sig, 1, "1" * 64, "2026-11-21T10:00:00.000Z")
    with pytest.raises(IntegrityViolation, match="chain is broken"):
        replay(stream, [entry])


def test_a_correctly_linked_entry_whose_recorded_at_goes_backwards_is_refused() -> None:
    stream = uuid.uuid4()
    first = build_chain(stream, [{"n": 1}])[0]
    statement_bytes, sig = signed(str(stream), {"n": 2})
    earlier = format_recorded(parse_timestamp(first.recorded_at) - timedelta(milliseconds=1))
    second = make_entry(statement_bytes, sig, 2, first.hash, earlier)
    with pytest.raises(IntegrityViolation, match="backwards") as excinfo:
        replay(stream, [first, second])
    assert excinfo.value.seq == 2


# --- the ledger's clock ------------------------------------------------------------------------


def clock_reading(times: Sequence[datetime]) -> Callable[[], datetime]:
    readings = iter(times)
    return lambda: next(readings)


def test_the_clock_holds_still_when_the_wall_clock_goes_backwards() -> None:
    clock = Clock(
        now=clock_reading(
            [T0, T0 - timedelta(hours=1), T0 + timedelta(milliseconds=1), T0 - timedelta(days=400)]
        )
    )
    assert [clock.next() for _ in range(4)] == [
        "2026-11-21T10:00:00.000Z",
        "2026-11-21T10:00:00.000Z",
        "2026-11-21T10:00:00.001Z",
        "2026-11-21T10:00:00.001Z",
    ]


def test_a_strict_reading_is_later_than_everything_before_it_even_within_a_millisecond() -> None:
    clock = Clock(now=clock_reading([T0, T0, T0, T0]))
    first = clock.next()
    assert clock.next(strictly=True) == "2026-11-21T10:00:00.001Z" > first
    assert clock.next("2026-11-21T10:00:00.005Z", strictly=True) == "2026-11-21T10:00:00.006Z"
    assert clock.next() == "2026-11-21T10:00:00.006Z"  # plain readings may share a millisecond


@given(st.lists(_times, min_size=1, max_size=40))
def test_the_clock_never_goes_backwards_whatever_the_wall_clock_does(times: list[datetime]) -> None:
    clock = Clock(now=clock_reading(times))
    stamps = [clock.next() for _ in times]
    assert all(RECORDED.match(stamp) for stamp in stamps)
    assert stamps == sorted(stamps)
    # Each reading is the latest wall-clock time seen so far, to the millisecond.
    for count, stamp in enumerate(stamps, start=1):
        assert stamp == format_recorded(max(times[:count]))


def test_the_clock_is_never_earlier_than_its_not_before_arguments() -> None:
    clock = Clock(now=lambda: T0)
    later = "2026-11-21T10:00:05.500Z"
    latest = "2026-11-21T10:00:09.000Z"
    assert clock.next(later) == later
    assert clock.next(later, latest, "2026-11-21T09:00:00.000Z") == latest


def test_the_clock_remembers_a_not_before_it_was_pushed_to() -> None:
    clock = Clock(now=lambda: T0)
    clock.next("2026-11-21T10:00:09.000Z")
    assert clock.next() == "2026-11-21T10:00:09.000Z"


def test_earlier_or_empty_not_before_arguments_do_not_hold_the_clock_back() -> None:
    # An empty stream's recorded_at is "", and it must not matter.
    clock = Clock(now=lambda: T0)
    assert clock.next("", "2020-01-01T00:00:00.000Z") == "2026-11-21T10:00:00.000Z"


@given(st.lists(st.tuples(_times, st.lists(_times.map(format_recorded), max_size=3)), min_size=1))
def test_the_clock_is_the_latest_of_its_past_the_wall_clock_and_not_before(
    steps: list[tuple[datetime, list[str]]],
) -> None:
    clock = Clock(now=clock_reading([moment for moment, _ in steps]))
    floor = ""
    for moment, not_before in steps:
        stamp = clock.next(*not_before)
        assert RECORDED.match(stamp)
        assert stamp >= floor
        assert stamp >= format_recorded(moment)
        assert all(stamp >= bound for bound in not_before)
        assert stamp in {floor, format_recorded(moment), *not_before}
        floor = stamp


def test_the_default_clock_reads_the_real_utc_time() -> None:
    before = format_recorded(datetime.now(UTC))
    stamp = Clock().next()
    after = format_recorded(datetime.now(UTC))
    assert RECORDED.match(stamp)
    assert before <= stamp <= after


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 21, 10, 0, 0, 999_999, tzinfo=UTC), "2026-11-21T10:00:00.999Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 6_000, tzinfo=UTC), "2026-01-02T03:04:05.006Z"),
        (
            datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            "2025-12-31T23:30:00.000Z",
        ),
        (
            datetime(2026, 6, 1, 12, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=-5))),
            "2026-06-01T17:00:00.123Z",
        ),
    ],
    ids=["truncates-not-rounds", "pads-milliseconds", "converts-east", "converts-west"],
)
def test_recorded_timestamps_are_utc_with_exactly_three_fractional_digits(
    moment: datetime, expected: str
) -> None:
    assert format_recorded(moment) == expected


@given(_times, _times)
def test_recorded_timestamps_compare_as_strings_as_their_times_do(a: datetime, b: datetime) -> None:
    a, b = sorted([a, b])
    assert format_recorded(a) <= format_recorded(b)
    assert parse_timestamp(format_recorded(a)) == a.replace(
        microsecond=a.microsecond // 1000 * 1000
    )


@pytest.mark.parametrize(
    ("at", "recorded"),
    [
        ("2026-11-21T10:00:00Z", "2026-11-21T10:00:00.000Z"),
        ("2026-11-21T10:00:00.250Z", "2026-11-21T10:00:00.250Z"),
    ],
)
def test_statement_times_normalise_to_the_recorded_form(at: str, recorded: str) -> None:
    assert normalise(at) == recorded
    assert parse_timestamp(at) == parse_timestamp(recorded)
