"""The typed query API the HTTP layer serves: documents read from the projection tables."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from ledger.directory import Directory
from projections.database import Database
from projections.documents import AccessRow, AuditRow, Plan, Register, Trace

T = TypeVar("T")


class Projections:
    """Reads the projections; every result is a msgspec Struct in a stable order."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def plan(self, case: str) -> Plan | None:
        return self._one("SELECT doc FROM projection_plans WHERE case_id = ?", (case,), Plan)

    def plan_document(self, case: str) -> bytes | None:
        """A case's plan as stored: the JSON of `Plan`, ready to serve."""
        rows = self.database.query("SELECT doc FROM projection_plans WHERE case_id = ?", (case,))
        return bytes(rows[0][0]) if rows else None

    def register(self, case: str) -> Register | None:
        sql = "SELECT doc FROM projection_registers WHERE case_id = ?"
        return self._one(sql, (case,), Register)

    def trace(self, case: str, decision: str) -> Trace | None:
        sql = "SELECT doc FROM projection_traces WHERE case_id = ? AND decision_id = ?"
        return self._one(sql, (case, decision), Trace)

    def audit(self, case: str, directory: Directory) -> list[AuditRow]:
        """Every entry of a case (or of the directory) in order, with its signature status."""
        sql = "SELECT doc FROM projection_audit WHERE case_id = ? ORDER BY seq"
        return [_signed(row, directory) for row in self._all(sql, (case,), AuditRow)]

    def contributions(self, person: str, directory: Directory) -> list[AuditRow]:
        """What a person said, and when, across every case, in ledger order."""
        sql = "SELECT doc FROM projection_audit WHERE author = ? ORDER BY position"
        return [_signed(row, directory) for row in self._all(sql, (person,), AuditRow)]

    def access(self, case: str | None = None) -> list[AccessRow]:
        """Recorded reads, of one case or of all, in the order they happened."""
        if case is None:
            return self._all("SELECT doc FROM projection_access ORDER BY position", (), AccessRow)
        sql = "SELECT doc FROM projection_access WHERE case_id = ? ORDER BY position"
        return self._all(sql, (case,), AccessRow)

    def _one(self, sql: str, params: tuple[str, ...], kind: type[T]) -> T | None:
        rows = self._all(sql, params, kind)
        return rows[0] if rows else None

    def _all(self, sql: str, params: tuple[str, ...], kind: type[T]) -> list[T]:
        return [
            msgspec.json.decode(bytes(doc), type=kind)
            for (doc,) in self.database.query(sql, params)
        ]


def _signed(row: AuditRow, directory: Directory) -> AuditRow:
    """Whether the key was the author's and valid when the entry was recorded.

    (The signature bytes were verified on append; `Ledger.check_stream` re-checks them.)
    """
    row.signature = directory.key_problem(row.kid, row.by.id, row.recorded_at) or "valid"
    return row
