"""Canonical JSON: byte-identical to RFC 8785 on its subset, and loud outside it."""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import MAX_DEPTH, MAX_SAFE_INTEGER, canonical, loads
from ledger.errors import Malformed

# Characters that JSON encoders are known to disagree on, or that exercise every escaping path:
# the C0 controls (short escapes \b \f \n \r \t and \u00XX), DEL (not escaped by JCS), the
# JavaScript line separators, quote and backslash, "/" (JCS does not escape it), BMP text
# outside Latin-1, and astral-plane characters that UTF-16 encoders turn into surrogate pairs.
_SPECIAL_CHARACTERS = [
    *(chr(code) for code in range(0x20)),
    "\x7f",
    "\u2028",
    "\u2029",
    '"',
    "\\",
    "/",
    "é",
    "\u00a0",
    "\ufeff",
    "\uffff",
    "€",
    "中",
    "😀",
    "\u200d",
    "\U0001d11e",
    "\U00020000",
    "\U0010ffff",
    "a",
    " ",
]

_ASCII = st.characters(min_codepoint=0, max_codepoint=0x7F)

json_keys = st.one_of(
    st.text(alphabet=_ASCII, max_size=6),
    st.sampled_from(
        ["", '"', "\\", "\x00", "\x1f", "\x7f", "\n", "a\tb", "Z", "_", "~", "10", "9"]
    ),
)

json_strings = st.one_of(
    st.text(max_size=12),  # any Unicode scalar value (hypothesis never generates surrogates)
    st.text(alphabet=st.sampled_from(_SPECIAL_CHARACTERS), max_size=12),
)

json_integers = st.one_of(
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.sampled_from([0, -1, 1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**31, -(2**31), 2**32]),
)

json_scalars = st.one_of(st.none(), st.booleans(), json_integers, json_strings)

json_documents: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(json_keys, children, max_size=5),
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(json_documents)
def test_canonical_bytes_are_identical_to_rfc8785_on_the_supported_subset(document: Any) -> None:
    assert canonical(document) == rfc8785.dumps(document)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(json_keys, json_documents, max_size=6))
def test_canonical_objects_are_identical_to_rfc8785(document: dict[str, Any]) -> None:
    assert canonical(document) == rfc8785.dumps(document)


@settings(max_examples=200, deadline=None)
@given(json_documents)
def test_canonical_bytes_parse_back_to_the_same_document_and_re_encode_identically(
    document: Any,
) -> None:
    encoded = canonical(document)
    assert loads(encoded) == document
    assert canonical(loads(encoded)) == encoded


@pytest.mark.parametrize(
    "document",
    [
        {},
        [],
        {"": {}},
        [[], {}, [[]]],
        {"b": 1, "a": 2, "B": 3, "_": 4, "10": 5, "9": 6},
        "\x00\x08\x09\x0a\x0c\x0d\x1f\x7f\u2028\u2029",
        '"\\/',
        "😀\U0010ffff",
        MAX_SAFE_INTEGER,
        -MAX_SAFE_INTEGER,
        True,
        False,
        None,
    ],
    ids=[
        "empty-object",
        "empty-array",
        "empty-key-and-object",
        "nested-empty",
        "key-order",
        "controls-and-separators",
        "quote-backslash-slash",
        "astral",
        "max-safe-integer",
        "min-safe-integer",
        "true",
        "false",
        "null",
    ],
)
def test_edge_cases_match_rfc8785(document: Any) -> None:
    assert canonical(document) == rfc8785.dumps(document)


def test_keys_are_sorted_and_no_whitespace_is_emitted() -> None:
    assert canonical({"b": [1, {"d": None, "c": True}], "a": "x"}) == (
        b'{"a":"x","b":[1,{"c":true,"d":null}]}'
    )


def test_tuples_encode_as_arrays() -> None:
    assert canonical({"a": (1, "two", None)}) == b'{"a":[1,"two",null]}'


class _Colour(enum.IntEnum):
    RED = 1


class _Text(str):
    pass


def _a_function() -> None:
    return None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param(1.0, "float", id="float-one"),
        pytest.param(0.5, "float", id="float-half"),
        pytest.param(-0.0, "float", id="negative-zero"),
        pytest.param(math.nan, "float", id="nan"),
        pytest.param(math.inf, "float", id="infinity"),
        pytest.param(-math.inf, "float", id="negative-infinity"),
        pytest.param({"a": [1, {"b": 2.5}]}, "float", id="nested-float"),
        pytest.param(2**53, "outside", id="two-to-the-53"),
        pytest.param(-(2**53), "outside", id="minus-two-to-the-53"),
        pytest.param(2**64, "outside", id="two-to-the-64"),
        pytest.param([MAX_SAFE_INTEGER + 1], "outside", id="nested-big-integer"),
        pytest.param({"é": 1}, "not ASCII", id="latin-key"),
        pytest.param({"a": {"ключ": 1}}, "not ASCII", id="nested-cyrillic-key"),
        pytest.param({"😀": 1}, "not ASCII", id="emoji-key"),
        pytest.param({"\ud800": 1}, "not ASCII", id="surrogate-key"),
        pytest.param({1: "a"}, "not a string", id="int-key"),
        pytest.param({None: "a"}, "not a string", id="none-key"),
        pytest.param({("a",): "a"}, "not a string", id="tuple-key"),
        pytest.param({"a": {_Text("b"): 1}}, "not a string", id="str-subclass-key"),
        pytest.param("\ud800", "surrogate", id="lone-high-surrogate"),
        pytest.param("\udfff", "surrogate", id="lone-low-surrogate"),
        pytest.param({"a": ["ok", "x\udc00y"]}, "surrogate", id="nested-lone-surrogate"),
        pytest.param(b"bytes", "bytes", id="bytes"),
        pytest.param(bytearray(b"x"), "bytearray", id="bytearray"),
        pytest.param({1, 2}, "set", id="set"),
        pytest.param(frozenset(), "frozenset", id="frozenset"),
        pytest.param(object(), "object", id="object"),
        pytest.param(_a_function, "function", id="function"),
        pytest.param(_Colour.RED, "_Colour", id="int-enum"),
        pytest.param(_Text("x"), "_Text", id="str-subclass"),
        pytest.param(OrderedDict(a=1), "OrderedDict", id="dict-subclass"),
    ],
)
def test_values_outside_the_canonical_subset_are_refused_with_a_clear_error(
    value: Any, fragment: str
) -> None:
    with pytest.raises(Malformed) as excinfo:
        canonical(value)
    assert excinfo.value.code == "malformed"
    assert fragment in str(excinfo.value)


def test_floats_are_refused_even_when_they_hold_a_whole_number() -> None:
    with pytest.raises(Malformed, match="floats are not allowed"):
        canonical({"count": 3.0})


def test_the_error_names_where_in_the_document_the_problem_is() -> None:
    with pytest.raises(Malformed) as excinfo:
        canonical({"a": [0, {"b": 1.5}]})
    assert "$.a[1].b" in str(excinfo.value)


def _nested(levels: int, inner: Any = 0) -> Any:
    value = inner
    for level in range(levels):
        value = [value] if level % 2 else {"a": value}
    return value


def test_objects_and_arrays_nest_at_most_max_depth_levels() -> None:
    assert canonical(_nested(MAX_DEPTH)) == orjson.dumps(_nested(MAX_DEPTH))
    for levels in (MAX_DEPTH + 1, 300, 2000):
        with pytest.raises(Malformed, match=f"nest at most {MAX_DEPTH} levels"):
            canonical(_nested(levels))
    with pytest.raises(Malformed, match=f"nest at most {MAX_DEPTH} levels"):
        canonical(_nested(MAX_DEPTH, inner=[]))  # an empty array counts as a level


def test_the_largest_safe_integers_are_accepted() -> None:
    assert (
        canonical([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == b"[9007199254740991,-9007199254740991]"
    )


@settings(max_examples=100, deadline=None)
@given(
    json_documents,
    st.text(min_size=1, max_size=4).filter(lambda key: not key.isascii()),
    st.data(),
)
def test_a_non_ascii_key_anywhere_in_a_document_is_refused(
    document: Any, key: str, data: st.DataObject
) -> None:
    # Wrap the document so the offending key sits at a chosen depth.
    depth = data.draw(st.integers(min_value=0, max_value=3))
    poisoned: Any = {key: document}
    for _ in range(depth):
        poisoned = [poisoned] if data.draw(st.booleans()) else {"k": poisoned}
    with pytest.raises(Malformed, match="not ASCII"):
        canonical(poisoned)


def test_fragments_are_embedded_verbatim() -> None:
    inner = b'{"z":1,"a":[true]}'
    assert canonical({"b": orjson.Fragment(inner), "a": 0}) == b'{"a":0,"b":' + inner + b"}"


def test_fragments_are_not_re_encoded_even_when_they_are_not_canonical() -> None:
    # The caller vouches for fragment bytes: this is how stored statement bytes stay exact.
    inner = b'{ "z" : 1 ,"a":2 }'
    assert canonical([orjson.Fragment(inner)]) == b"[" + inner + b"]"


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{",
        b'{"a":1,}',
        b"[1,]",
        b"{'a': 1}",
        b'{"a" 1}',
        b"NaN",
        b"Infinity",
        b"tru",
        b'"unterminated',
        b"\xff\xfe",
        b'"\\ud800"',
        b"[1] [2]",
        "{",
    ],
    ids=[
        "empty",
        "unclosed-object",
        "trailing-comma-object",
        "trailing-comma-array",
        "single-quotes",
        "missing-colon",
        "nan",
        "infinity",
        "truncated-literal",
        "unterminated-string",
        "invalid-utf8",
        "lone-surrogate-escape",
        "two-documents",
        "str-input",
    ],
)
def test_loads_refuses_invalid_json_with_malformed(text: bytes | str) -> None:
    with pytest.raises(Malformed, match="not valid JSON") as excinfo:
        loads(text)
    assert excinfo.value.code == "malformed"


@pytest.mark.parametrize(
    "text",
    [b'{"a":[1,"x",null]}', '{"a":[1,"x",null]}', memoryview(b'{"a":[1,"x",null]}')],
    ids=["bytes", "str", "memoryview"],
)
def test_loads_parses_bytes_str_and_memoryview(text: bytes | str | memoryview) -> None:
    assert loads(text) == {"a": [1, "x", None]}
