"""Clean text: what a submitted body's strings may hold, so that every text a person reads in
the record shows what was signed. Checked when a statement is submitted, never on stored
entries, so a ledger that already holds such text still reads and verifies."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from ledger.errors import Malformed

# C0 controls but tab and newline, DEL, C1 controls; bidirectional embeddings, overrides and
# isolates, which reorder what a reader sees (U+202A-U+202E, U+2066-U+2069).
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Letters, numbers, punctuation, symbols and spacing marks show something; separators, "other"
# (controls, format characters like U+200B, unassigned) and marks that only combine do not.
_VISIBLE = frozenset("LNPS")
# Letters and symbols that are blank by design: Hangul fillers, the blank Braille pattern.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def text_problem(text: str) -> str | None:
    """Why `text` may not be recorded (a control or bidirectional control character, or no
    visible character), or None if it may; the empty string may (optional text left out)."""
    # Most text is printable, which rules out every control and format character at C speed.
    forbidden = None if text.isprintable() else _FORBIDDEN.search(text)
    if forbidden is not None:
        character = forbidden.group()
        what = "a control" if character < "\u2000" else "a bidirectional control"
        return f"contains {what} character (U+{ord(character):04X})"
    if text and not _visible(text[0]) and not any(_visible(character) for character in text):
        return "has no visible character"
    return None


def _visible(character: str) -> bool:
    if character.isascii():
        return " " < character < "\x7f"
    category = unicodedata.category(character)
    return (category[0] in _VISIBLE or category == "Mc") and character not in _BLANK


def check_texts(value: Any, path: str = "body") -> None:
    """Raise `Malformed` naming the field (e.g. `body.reasons`) of the first string in a JSON
    value that `text_problem` refuses."""
    found = _find(value)
    if found is not None:
        where, problem = found
        raise Malformed(f"{path}{where}: {problem}")


def _find(value: Any) -> tuple[str, str] | None:
    """Where in `value` the first refused string is, and why (the path is built only then)."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else ("", problem)
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items, step = value.items(), ".{}"
    elif isinstance(value, list):
        items, step = enumerate(value), "[{}]"
    else:
        return None
    for key, item in items:
        found = _find(item)
        if found is not None:
            return step.format(key) + found[0], found[1]
    return None
