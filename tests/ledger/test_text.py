"""What submitted text may hold: no control characters but tab and newline, no bidirectional
overrides or isolates, and at least one visible character (or nothing at all)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import Malformed
from ledger.text import check_texts, text_problem

CONTROLS = [chr(c) for c in range(0x20) if c not in (0x09, 0x0A)] + ["\x7f"]
CONTROLS += [chr(c) for c in range(0x80, 0xA0)]
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
FORBIDDEN = CONTROLS + BIDI

# Characters that show nothing: white space and separators, format characters (U+200B-U+200F,
# U+2060-U+2064, U+FEFF...), marks with nothing to combine with, blank letters and symbols.
invisible = st.one_of(
    st.characters(categories=["Zs", "Zl", "Zp", "Cf", "Mn", "Me"], exclude_characters=BIDI),
    st.sampled_from(["\t", "\n", "\u3164", "\u2800", "\u115f"]),
)
visible = st.characters(
    categories=["Lu", "Ll", "Lo", "Nd", "Po", "Sm", "So"], exclude_characters="\u3164\u2800\u115f"
)
clean = st.lists(st.one_of(visible, invisible)).map("".join)


@st.composite
def with_visible(draw: st.DrawFn) -> str:
    return draw(clean) + draw(visible) + draw(clean)


@st.composite
def with_forbidden(draw: st.DrawFn) -> str:
    return draw(clean) + draw(st.sampled_from(FORBIDDEN)) + draw(clean)


@given(with_visible())
def test_text_with_a_visible_character_and_nothing_forbidden_is_clean(text: str) -> None:
    assert text_problem(text) is None


@given(st.lists(invisible, min_size=1).map("".join))
def test_text_with_no_visible_character_is_refused(text: str) -> None:
    assert text_problem(text) == "has no visible character"


@given(with_forbidden())
def test_text_with_a_control_or_bidirectional_control_is_refused(text: str) -> None:
    problem = text_problem(text)
    assert problem is not None
    assert problem.startswith(("contains a control character (U+", "contains a bidirectional"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("\x00", "contains a control character (U+0000)"),
        ("\u200b", "has no visible character"),
        ("\u202e" * 4000, "contains a bidirectional control character (U+202E)"),
        ("ok\u2066then", "contains a bidirectional control character (U+2066)"),
        ("line\r\nbreak", "contains a control character (U+000D)"),
        ("\x85", "contains a control character (U+0085)"),
        ("\ufeff\u2060 \u00a0", "has no visible character"),
        ("", None),
        ("Amara\u200d\U0001f469\u200d\U0001f467 said:\n\tno", None),
        ("\u0623\u0645\u064a\u0631\u0629 \u200f(RLM)", None),
    ],
)
def test_known_texts(text: str, problem: str | None) -> None:
    assert text_problem(text) == problem


def test_a_refusal_names_the_field_where_it_is() -> None:
    body = {"scope": {"type": "sharing", "organisation": "\u200b"}, "reasons": "fine"}
    with pytest.raises(Malformed) as refused:
        check_texts(body)
    assert refused.value.detail == "body.scope.organisation: has no visible character"
    with pytest.raises(Malformed) as refused:
        check_texts({"required": ["fine", "\x00"]})
    assert refused.value.detail == "body.required[1]: contains a control character (U+0000)"
