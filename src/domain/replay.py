"""Replaying the rules: every entry of a case is checked against R1-R14 as they stood just
before it, exactly as the ledger checked it on append. A stored entry that the rules would
refuse means the store was written behind the ledger's back."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from domain.case import Case
from domain.errors import RuleViolated
from domain.rules import admit
from ledger.directory import Directory
from ledger.entry import Entry
from ledger.errors import IntegrityViolation, LedgerError


def replay_case(case_id: UUID, entries: Iterable[Entry], directory: Directory) -> int:
    """Fold a case's entries, admitting each first; returns how many there were.

    Raises `IntegrityViolation` naming the seq of the first entry the rules refuse.
    """
    case = Case(case_id)
    for entry in entries:
        try:
            admit(case, entry.statement, directory, entry.recorded_at)
        except RuleViolated as exc:
            raise IntegrityViolation(
                str(case_id), entry.seq, f"the rules refuse it ({exc.rule}): {exc.detail}"
            ) from None
        try:
            case.apply(entry)
        except IntegrityViolation:
            raise
        except LedgerError as exc:
            raise IntegrityViolation(str(case_id), entry.seq, exc.detail) from None
    return case.version
