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


class CaseReplay:
    """One case replayed entry by entry (as `replay_case` does), for a reader that meets its
    entries one at a time: call it with each, in seq order."""

    def __init__(self, case_id: UUID | str, directory: Directory) -> None:
        self.case = Case(case_id if isinstance(case_id, UUID) else UUID(case_id))
        self.directory = directory

    def __call__(self, entry: Entry) -> None:
        """Admit the entry, then fold it in; raises `IntegrityViolation` naming its seq if the
        rules refuse it or it does not fold."""
        case = self.case
        try:
            admit(case, entry.statement, self.directory, entry.recorded_at)
        except RuleViolated as exc:
            raise IntegrityViolation(
                case.key, entry.seq, f"the rules refuse it ({exc.rule}): {exc.detail}"
            ) from None
        try:
            case.apply(entry)
        except IntegrityViolation:
            raise
        except LedgerError as exc:
            raise IntegrityViolation(case.key, entry.seq, exc.detail) from None


def replay_case(case_id: UUID, entries: Iterable[Entry], directory: Directory) -> int:
    """Fold a case's entries, admitting each first; returns how many there were.

    Raises `IntegrityViolation` naming the seq of the first entry the rules refuse.
    """
    replay = CaseReplay(case_id, directory)
    for entry in entries:
        replay(entry)
    return replay.case.version
