"""What the projection follower reads: each entry decoded in one typed pass, and bodies decoded
against their types without their patterns and lengths checked again."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical
from ledger.clock import format_recorded
from ledger.entry import GENESIS_PREV, follow_entry, make_entry, read_entry
from ledger.errors import Malformed
from ledger.statement import Header, body_decoders, read_body, unconstrained
from tests.ledger.test_entry import AUTHOR, _any_text, _bodies, _hex64, _times

RECORDED = "2026-11-21T10:00:00.000Z"


@settings(max_examples=200, deadline=None)
@given(
    body=_bodies,
    seq=st.integers(min_value=1, max_value=2**53 - 1),
    prev=st.one_of(st.just(GENESIS_PREV), _hex64),
    recorded_at=_times.map(format_recorded),
    sig=_any_text,
    on_behalf_of=st.one_of(st.none(), st.uuids().map(str)),
)
def test_the_follower_reads_every_entry_as_the_ledgers_own_reader_does(
    body: dict[str, Any], seq: int, prev: str, recorded_at: str, sig: str, on_behalf_of: str | None
) -> None:
    document = AUTHOR.statement(str(uuid.uuid4()), "opinion.given", body, for_=on_behalf_of)
    data = make_entry(canonical(document), sig, seq, prev, recorded_at).data

    followed, read = follow_entry(data), read_entry(data)

    assert followed == read
    assert followed.hash == read.hash
    assert followed.header == read.header
    statement, header = read.statement, followed.header
    assert (header.stream, header.kind, header.by, header.kid, header.at) == (
        statement.stream,
        statement.kind,
        statement.by,
        statement.kid,
        statement.at,
    )
    assert header.on_behalf_of == statement.on_behalf_of == on_behalf_of
    assert msgspec.json.decode(header.body) == statement.body


GOOD = make_entry(
    canonical(AUTHOR.statement(str(uuid.uuid4()), "opinion.given", {"text": "agree"})),
    "sig",
    1,
    GENESIS_PREV,
    RECORDED,
).data


def without(field: str) -> bytes:
    document = orjson.loads(GOOD)
    del document[field]
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def changed(**fields: Any) -> bytes:
    document = orjson.loads(GOOD)
    document.update(fields)
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def statement_without(field: str) -> bytes:
    document = orjson.loads(GOOD)
    del document["statement"][field]
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(GOOD[:-1], id="truncated"),
        pytest.param(without("prev"), id="missing-prev"),
        pytest.param(without("statement"), id="missing-statement"),
        pytest.param(changed(note="x"), id="extra-field"),
        pytest.param(changed(seq="1"), id="seq-string"),
        pytest.param(changed(seq=True), id="seq-bool"),
        pytest.param(changed(sig=None), id="sig-null"),
        pytest.param(statement_without("kind"), id="statement-missing-kind"),
        pytest.param(changed(statement={"not": "a statement"}), id="not-a-statement"),
    ],
)
def test_the_follower_refuses_what_is_not_an_entry_of_a_statement(data: bytes) -> None:
    with pytest.raises(Malformed):
        follow_entry(data)


Id = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8}\Z")]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=5)]


class Scope(msgspec.Struct, tag="scope", tag_field="type", forbid_unknown_fields=True):
    owner: Id
    until: date


class Other(msgspec.Struct, tag="other", tag_field="type", forbid_unknown_fields=True):
    note: Short


class Said(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    about: Id
    stance: Literal["yes", "no"]
    scope: Scope | Other
    many: Annotated[list[Id], msgspec.Meta(min_length=1)]
    note: Short = ""
    renamed: Short | None = msgspec.field(default=None, name="as")


DECODERS = body_decoders({"thing.said": Said})


def body(raw: dict[str, Any]) -> Any:
    header = Header("o", "i", "s", "thing.said", "b", "k", "a", msgspec.Raw(canonical(raw)))
    return read_body(header, DECODERS, "test")


GOOD_BODY = {
    "about": "0123abcd",
    "stance": "yes",
    "scope": {"type": "scope", "owner": "89abcdef", "until": "2030-01-31"},
    "many": ["0123abcd"],
    "as": "x",
}


def test_a_body_read_for_folding_is_the_body_as_validated_and_of_its_type() -> None:
    read = body(GOOD_BODY)

    assert isinstance(read, Said) and isinstance(read.scope, Scope)
    assert msgspec.to_builtins(read) == msgspec.to_builtins(msgspec.convert(GOOD_BODY, Said))
    assert read.scope.until == date(2030, 1, 31) and read.renamed == "x"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"extra": 1}, id="unknown-field"),
        pytest.param({"stance": "maybe"}, id="not-a-literal"),
        pytest.param({"many": "0123abcd"}, id="wrong-type"),
        pytest.param({"scope": {"type": "scope", "owner": "89abcdef"}}, id="missing-in-nested"),
        pytest.param({"scope": {"type": "none"}}, id="unknown-tag"),
        pytest.param({"scope": {"type": "scope", "owner": "a", "until": "2030-02-30"}}, id="date"),
    ],
)
def test_a_body_read_for_folding_is_still_checked_for_structure_and_types(
    change: dict[str, Any],
) -> None:
    with pytest.raises(Malformed):
        body({**GOOD_BODY, **change})


def test_a_body_read_for_folding_skips_only_patterns_and_lengths_checked_when_written() -> None:
    loose = {**GOOD_BODY, "about": "not an id", "many": [], "note": "far too long"}

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(loose, Said)
    assert body(loose).about == "not an id"
    assert issubclass(unconstrained(Said), Said)
