"""Statements and submissions: what is signed, and what a submission may look like."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import keys
from ledger.author import Author
from ledger.canonical import canonical
from ledger.encoding import b64url, from_b64url
from ledger.errors import LedgerError, Malformed, TooLarge
from ledger.statement import MAX_SUBMISSION_BYTES, parse_submission

ORIGIN = "clinic.example/accord"
KEY = keys.generate()
OTHER_KEY = keys.generate()
PERSON = str(uuid.uuid4())
SUPPORTED = str(uuid.uuid4())
STREAM = str(uuid.uuid4())
AUTHOR = Author(ORIGIN, PERSON, KEY)
AT = "2026-11-21T10:00:00Z"


def statement(**changes: Any) -> dict[str, Any]:
    """A valid statement dict with some fields replaced (or removed, when given `...`)."""
    document = AUTHOR.statement(STREAM, "opinion.given", {"text": "agree"}, at=AT)
    for name, value in changes.items():
        field = "for" if name == "for_" else name
        if value is ...:
            del document[field]
        else:
            document[field] = value
    return document


def envelope(document: dict[str, Any]) -> dict[str, Any]:
    """The submission envelope, signed over canonical bytes computed by the reference encoder."""
    sig = b64url(KEY.sign(b"accord.statement.v1\n" + rfc8785.dumps(document)))
    return {"statement": document, "sig": sig}


def submission_bytes(**changes: Any) -> bytes:
    return orjson.dumps(envelope(statement(**changes)))


def with_body_value(raw: bytes) -> bytes:
    """A submission whose body holds `raw` JSON text verbatim (for values no encoder produces)."""
    data = submission_bytes(body={"value": "__RAW__"})
    assert data.count(b'"__RAW__"') == 1
    return data.replace(b'"__RAW__"', raw)


def with_body_key(raw_key: bytes) -> bytes:
    data = submission_bytes(body={"__KEY__": 1})
    assert data.count(b'"__KEY__"') == 1
    return data.replace(b'"__KEY__"', raw_key)


def padded_submission(size: int) -> bytes:
    """A valid submission of exactly `size` bytes."""
    base = len(submission_bytes(body={"pad": ""}))
    data = submission_bytes(body={"pad": "x" * (size - base)})
    assert len(data) == size
    return data


# --- accepted submissions ----------------------------------------------------------------------


def test_a_signed_submission_parses_and_verifies_with_the_authors_key() -> None:
    submission = parse_submission(AUTHOR.submission(STREAM, "opinion.given", {"text": "agree"}))
    assert submission.signature_valid(KEY.public_key())


def test_a_signature_does_not_verify_with_another_key() -> None:
    submission = parse_submission(AUTHOR.submission(STREAM, "opinion.given", {"text": "agree"}))
    assert not submission.signature_valid(OTHER_KEY.public_key())


def test_the_statement_fields_are_read_from_the_submission() -> None:
    statement_id = str(uuid.uuid4())
    data = AUTHOR.submission(
        STREAM,
        "view.recorded",
        {"words": "I want to stay at my school", "n": [1, 2]},
        for_=SUPPORTED,
        statement_id=statement_id,
        at="2026-11-21T10:00:00.250Z",
    )
    parsed = parse_submission(data).statement
    assert parsed.ledger == ORIGIN
    assert parsed.id == statement_id
    assert parsed.stream == STREAM
    assert parsed.kind == "view.recorded"
    assert parsed.by == PERSON
    assert parsed.kid == keys.kid(KEY)
    assert parsed.at == "2026-11-21T10:00:00.250Z"
    assert parsed.body == {"words": "I want to stay at my school", "n": [1, 2]}
    assert parsed.on_behalf_of == SUPPORTED


def test_a_statement_without_for_speaks_for_nobody_else() -> None:
    assert parse_submission(submission_bytes()).statement.on_behalf_of is None


def test_the_signature_is_over_the_domain_prefix_and_the_canonical_statement_bytes() -> None:
    document = AUTHOR.statement(STREAM, "opinion.given", {"b": 1, "a": ["\u2028", "😀"]})
    envelope_document = orjson.loads(AUTHOR.sign(document))
    signature = from_b64url(envelope_document["sig"])
    expected_bytes = rfc8785.dumps(document)

    KEY.public_key().verify(signature, b"accord.statement.v1\n" + expected_bytes)
    with pytest.raises(InvalidSignature):  # the prefix is part of what is signed
        KEY.public_key().verify(signature, expected_bytes)

    submission = parse_submission(AUTHOR.sign(document))
    assert submission.statement_bytes == expected_bytes


def test_a_submission_whose_statement_is_not_in_canonical_form_verifies_over_canonical_bytes() -> (
    None
):
    # The author signs canonical bytes, but may send the statement in any JSON layout.
    document = statement(body={"z": 1, "a": {"y": [1, 2], "b": "\u00e9"}})
    signed = envelope(document)
    reordered = dict(reversed(list(document.items())))
    data = (
        b'{ "sig" : "'
        + signed["sig"].encode()
        + b'" ,\n "statement" : '
        + orjson.dumps(reordered, option=orjson.OPT_INDENT_2)
        + b"}"
    )
    submission = parse_submission(data)
    assert submission.statement_bytes == rfc8785.dumps(document)
    assert submission.signature_valid(KEY.public_key())


def test_changing_the_statement_after_signing_invalidates_the_signature() -> None:
    signed = envelope(statement(body={"decision": "agree"}))
    signed["statement"]["body"]["decision"] = "disagree"
    submission = parse_submission(orjson.dumps(signed))
    assert not submission.signature_valid(KEY.public_key())


def test_a_submission_of_exactly_64_kib_is_not_rejected_for_size() -> None:
    submission = parse_submission(padded_submission(MAX_SUBMISSION_BYTES))
    assert MAX_SUBMISSION_BYTES == 65536
    assert submission.signature_valid(KEY.public_key())


# --- rejected submissions ----------------------------------------------------------------------

Case = Callable[[], bytes]

REJECTIONS: list[Any] = [
    pytest.param(lambda: padded_submission(MAX_SUBMISSION_BYTES + 1), TooLarge, id="64KiB-plus-1"),
    pytest.param(
        lambda: b"{" + b" " * MAX_SUBMISSION_BYTES + b"}", TooLarge, id="size-before-json"
    ),
    pytest.param(lambda: b"", Malformed, id="empty"),
    pytest.param(lambda: b'{"statement": {', Malformed, id="truncated-json"),
    pytest.param(lambda: b"{'statement': {}}", Malformed, id="single-quoted-json"),
    pytest.param(lambda: b"\xff\xfe{}", Malformed, id="invalid-utf8"),
    pytest.param(lambda: b"[]", Malformed, id="top-level-array"),
    pytest.param(lambda: b'"statement"', Malformed, id="top-level-string"),
    pytest.param(lambda: b"null", Malformed, id="top-level-null"),
    pytest.param(lambda: b"7", Malformed, id="top-level-number"),
    pytest.param(
        lambda: orjson.dumps({"statement": statement()}),
        Malformed,
        id="missing-sig",
    ),
    pytest.param(
        lambda: orjson.dumps({"sig": envelope(statement())["sig"]}),
        Malformed,
        id="missing-statement",
    ),
    pytest.param(
        lambda: orjson.dumps({**envelope(statement()), "note": "hi"}),
        Malformed,
        id="unknown-envelope-field",
    ),
    pytest.param(lambda: submission_bytes(extra=1), Malformed, id="unknown-statement-field"),
    pytest.param(lambda: submission_bytes(For=SUPPORTED), Malformed, id="miscased-for"),
    *(
        pytest.param(
            (lambda name=name: submission_bytes(**{name: ...})), Malformed, id=f"missing-{name}"
        )
        for name in ["ledger", "id", "stream", "kind", "by", "kid", "at", "body"]
    ),
    pytest.param(lambda: submission_bytes(id=7), Malformed, id="id-int"),
    pytest.param(lambda: submission_bytes(stream=[1, 2, 3]), Malformed, id="stream-list-of-ints"),
    pytest.param(lambda: submission_bytes(kind=5), Malformed, id="kind-int"),
    pytest.param(lambda: submission_bytes(by=None), Malformed, id="by-null"),
    pytest.param(lambda: submission_bytes(kid=True), Malformed, id="kid-bool"),
    pytest.param(lambda: submission_bytes(at=1795000000), Malformed, id="at-int"),
    pytest.param(lambda: submission_bytes(ledger=7), Malformed, id="ledger-int"),
    pytest.param(lambda: submission_bytes(body=[]), Malformed, id="body-list"),
    pytest.param(lambda: submission_bytes(body="agree"), Malformed, id="body-string"),
    pytest.param(lambda: submission_bytes(body=None), Malformed, id="body-null"),
    pytest.param(lambda: submission_bytes(for_=7), Malformed, id="for-int"),
    pytest.param(lambda: submission_bytes(for_=None), Malformed, id="for-null"),
    pytest.param(
        lambda: orjson.dumps({"statement": statement(), "sig": 123}), Malformed, id="sig-int"
    ),
    pytest.param(
        lambda: orjson.dumps({"statement": "{}", "sig": envelope(statement())["sig"]}),
        Malformed,
        id="statement-string",
    ),
    pytest.param(
        lambda: orjson.dumps({"statement": [statement()], "sig": envelope(statement())["sig"]}),
        Malformed,
        id="statement-array",
    ),
    pytest.param(lambda: submission_bytes(id=str(uuid.uuid4()).upper()), Malformed, id="id-upper"),
    pytest.param(
        lambda: submission_bytes(stream=STREAM.upper()), Malformed, id="stream-uppercase-uuid"
    ),
    pytest.param(lambda: submission_bytes(by=uuid.uuid4().hex), Malformed, id="by-unhyphenated"),
    pytest.param(
        lambda: submission_bytes(id="{" + str(uuid.uuid4()) + "}"), Malformed, id="id-braced"
    ),
    pytest.param(lambda: submission_bytes(id="not-a-uuid"), Malformed, id="id-not-uuid"),
    pytest.param(lambda: submission_bytes(for_=SUPPORTED.upper()), Malformed, id="for-upper"),
    pytest.param(lambda: submission_bytes(at="2026-11-21T10:00:00"), Malformed, id="at-no-z"),
    pytest.param(lambda: submission_bytes(at="2026-11-21T10:00:00z"), Malformed, id="at-lower-z"),
    pytest.param(
        lambda: submission_bytes(at="2026-11-21T10:00:00+00:00"), Malformed, id="at-utc-offset"
    ),
    pytest.param(
        lambda: submission_bytes(at="2026-11-21T11:00:00+01:00"), Malformed, id="at-offset"
    ),
    pytest.param(
        lambda: submission_bytes(at="2026-02-30T10:00:00Z"), Malformed, id="at-february-30"
    ),
    pytest.param(lambda: submission_bytes(at="2026-13-01T10:00:00Z"), Malformed, id="at-month-13"),
    pytest.param(lambda: submission_bytes(at="2026-11-21T24:00:00Z"), Malformed, id="at-hour-24"),
    pytest.param(lambda: submission_bytes(at="2026-11-21 10:00:00Z"), Malformed, id="at-space"),
    pytest.param(lambda: submission_bytes(at="2026-11-21T10:00:00.25Z"), Malformed, id="at-cs"),
    pytest.param(
        lambda: submission_bytes(at="2026-11-21T10:00:00.250000Z"), Malformed, id="at-micros"
    ),
    pytest.param(lambda: submission_bytes(at="2026-11-21"), Malformed, id="at-date-only"),
    pytest.param(lambda: submission_bytes(at="٢٠٢٦-11-21T10:00:00Z"), Malformed, id="at-arabic"),
    pytest.param(lambda: with_body_value(b"1.5"), Malformed, id="body-float"),
    pytest.param(lambda: with_body_value(b"1.0"), Malformed, id="body-whole-float"),
    pytest.param(lambda: with_body_value(b"1e3"), Malformed, id="body-exponent"),
    pytest.param(lambda: with_body_value(b'{"a":[0,2.5]}'), Malformed, id="body-nested-float"),
    pytest.param(lambda: with_body_value(b"9007199254740992"), Malformed, id="body-2-to-53"),
    pytest.param(lambda: with_body_value(b"-9007199254740992"), Malformed, id="body-minus-2-53"),
    pytest.param(lambda: with_body_value(b"NaN"), Malformed, id="body-nan"),
    pytest.param(lambda: with_body_value(b'"\\ud800"'), Malformed, id="body-lone-surrogate"),
    pytest.param(lambda: with_body_key('"é"'.encode()), Malformed, id="body-non-ascii-key"),
    pytest.param(
        lambda: with_body_value('{"a":{"ключ":1}}'.encode()), Malformed, id="body-nested-non-ascii"
    ),
    pytest.param(lambda: submission_bytes(kid=keys.kid(KEY)[:42]), Malformed, id="kid-42"),
    pytest.param(lambda: submission_bytes(kid=keys.kid(KEY) + "A"), Malformed, id="kid-44"),
    pytest.param(
        lambda: submission_bytes(kid=keys.kid(KEY)[:42] + "="), Malformed, id="kid-padded"
    ),
    pytest.param(lambda: submission_bytes(kind="Opinion.Given"), Malformed, id="kind-uppercase"),
    pytest.param(lambda: submission_bytes(kind="opinion"), Malformed, id="kind-no-dot"),
    pytest.param(lambda: submission_bytes(kind="opinion." + "x" * 60), Malformed, id="kind-long"),
    pytest.param(lambda: submission_bytes(ledger=""), Malformed, id="ledger-empty"),
    pytest.param(lambda: submission_bytes(ledger="clinic example"), Malformed, id="ledger-space"),
    pytest.param(
        lambda: orjson.dumps({"statement": statement(), "sig": b64url(bytes(63))}),
        Malformed,
        id="sig-63-bytes",
    ),
    pytest.param(
        lambda: orjson.dumps({"statement": statement(), "sig": b64url(bytes(64)) + "=="}),
        Malformed,
        id="sig-padded",
    ),
]


@pytest.mark.parametrize(("make", "expected"), REJECTIONS)
def test_parse_submission_refuses(make: Case, expected: type[LedgerError]) -> None:
    data = make()
    with pytest.raises(LedgerError) as excinfo:
        parse_submission(data)
    assert type(excinfo.value) is expected
    assert excinfo.value.code == {TooLarge: "too_large", Malformed: "malformed"}[expected]


def test_rejection_cases_differ_from_a_valid_submission_only_in_the_named_way() -> None:
    # Guards the table above: its helpers build submissions that are otherwise accepted.
    parse_submission(submission_bytes())
    parse_submission(submission_bytes(for_=SUPPORTED))
    parse_submission(submission_bytes(at="2026-02-28T23:59:59.999Z"))
    parse_submission(with_body_value(b"9007199254740991"))
    parse_submission(with_body_value(b'{"a":[0,-9007199254740991,"\\u2028"]}'))
    parse_submission(with_body_key(b'"plain"'))
    parse_submission(padded_submission(1000))


@pytest.mark.parametrize("field", ["id", "by", "kind", "kid", "ledger"])
def test_a_trailing_newline_after_a_field_is_refused(field: str) -> None:
    value = statement()[field] + "\n"
    with pytest.raises(Malformed):
        parse_submission(submission_bytes(**{field: value}))


# --- properties --------------------------------------------------------------------------------

_ascii_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=10)
_body_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
        st.text(max_size=10),
    ),
    lambda children: st.lists(children, max_size=4),
    max_leaves=10,
)
bodies = st.dictionaries(_ascii_text, _body_values, max_size=6)


@settings(max_examples=100, deadline=None)
@given(bodies, st.integers(min_value=0, max_value=63), st.integers(min_value=1, max_value=255))
def test_any_signed_body_parses_verifies_and_breaks_when_a_signature_byte_flips(
    body: dict[str, Any], position: int, flip: int
) -> None:
    document = AUTHOR.statement(STREAM, "opinion.given", body)
    data = AUTHOR.sign(document)
    submission = parse_submission(data)

    assert submission.statement_bytes == canonical(document)
    assert submission.statement_bytes == rfc8785.dumps(document)
    assert submission.statement.body == body
    assert submission.signature_valid(KEY.public_key())

    signature = bytearray(from_b64url(submission.sig))
    signature[position] ^= flip
    tampered = copy.deepcopy(orjson.loads(data))
    tampered["sig"] = b64url(bytes(signature))
    assert not parse_submission(orjson.dumps(tampered)).signature_valid(KEY.public_key())


def test_flipping_any_one_bit_of_a_signature_invalidates_it() -> None:
    data = orjson.loads(AUTHOR.submission(STREAM, "opinion.given", {"text": "agree"}))
    signature = from_b64url(data["sig"])
    for position in range(len(signature)):
        for bit in range(8):
            altered = bytearray(signature)
            altered[position] ^= 1 << bit
            data["sig"] = b64url(bytes(altered))
            assert not parse_submission(orjson.dumps(data)).signature_valid(KEY.public_key()), (
                position,
                bit,
            )
