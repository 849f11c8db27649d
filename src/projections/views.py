"""The projections: what each keeps, how one entry changes it, and how a batch is written."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from domain.case import Case
from ledger.access import ReadRecorded
from ledger.directory import Directory
from ledger.entry import Entry
from ledger.stream import Record, Stream
from projections.database import Cursor
from projections.documents import AccessRow, AuditRow, Builder

_encode = msgspec.json.Encoder(order="deterministic").encode


@dataclass
class Batch:
    """One projection's work for one batch: what was touched, rows to write, the position."""

    builder: Builder
    position: int
    cases: dict[str, Case] = field(default_factory=dict)
    decisions: dict[tuple[str, str], Case] = field(default_factory=dict)
    rows: list[AuditRow] = field(default_factory=list)
    corrections: list[tuple[str, str]] = field(default_factory=list)
    reads: list[AccessRow] = field(default_factory=list)


class Projection:
    """A read model kept by the follower."""

    name = ""
    tables: tuple[str, ...] = ()

    def on_entry(self, batch: Batch, state: Stream, entry: Entry) -> None:
        """Note what this entry changes; `state` already includes it."""

    def on_record(self, batch: Batch, record: Record, position: int) -> None:
        """Note a record kept beside the streams (`position`: its notification id)."""

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        """Write the batch's changes (in the follower's transaction)."""

    def drop(self, cursor: Cursor) -> None:
        for table in self.tables:
            cursor.execute(f"DELETE FROM {table}")


class PlanProjection(Projection):
    """Per case: the current plan."""

    name = "plan"
    tables = ("projection_plans",)

    def on_entry(self, batch: Batch, state: Stream, entry: Entry) -> None:
        if isinstance(state, Case):
            batch.cases[str(state.id)] = state

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        cursor.executemany(
            "INSERT INTO projection_plans (case_id, doc) VALUES (?, ?)"
            " ON CONFLICT (case_id) DO UPDATE SET doc = excluded.doc",
            [(case_id, _encode(batch.builder.plan(c))) for case_id, c in batch.cases.items()],
        )


class RegisterProjection(PlanProjection):
    """Per case: consents and information sharing."""

    name = "register"
    tables = ("projection_registers",)

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        cursor.executemany(
            "INSERT INTO projection_registers (case_id, doc) VALUES (?, ?)"
            " ON CONFLICT (case_id) DO UPDATE SET doc = excluded.doc",
            [(case_id, _encode(batch.builder.register(c))) for case_id, c in batch.cases.items()],
        )


class TraceProjection(Projection):
    """Per decision: how it was reached."""

    name = "trace"
    tables = ("projection_traces",)

    def on_entry(self, batch: Batch, state: Stream, entry: Entry) -> None:
        if not isinstance(state, Case):
            return
        ref = state.entries[entry.hash]
        decisions: set[str | None] = {ref.decision}
        target = getattr(ref.body, "consent", None) or getattr(ref.body, "entry", None)
        if target in state.entries:
            decisions.add(state.entries[target].decision)
        if ref.kind.startswith(("consent.", "information.")):
            decisions.update(state.decisions)  # registers appear in every trace of the case
        for decision in list(decisions):
            revisited = state.decisions[decision].revisits if decision in state.decisions else None
            decisions.add(revisited)  # its trace shows it superseded once this one is agreed
        for decision in decisions:
            if decision is not None:
                batch.decisions[(str(state.id), decision)] = state

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        cursor.executemany(
            "INSERT INTO projection_traces (case_id, decision_id, doc) VALUES (?, ?, ?)"
            " ON CONFLICT (case_id, decision_id) DO UPDATE SET doc = excluded.doc",
            [
                (case_id, decision, _encode(batch.builder.trace(c, c.decisions[decision])))
                for (case_id, decision), c in batch.decisions.items()
            ],
        )


class AuditProjection(Projection):
    """Every entry in ledger order, as a reviewer reads it; also who contributed what."""

    name = "audit"
    tables = ("projection_audit",)

    def on_entry(self, batch: Batch, state: Stream, entry: Entry) -> None:
        statement = entry.statement
        builder = batch.builder
        role = late = None
        if isinstance(state, Case):
            ref = state.entries[entry.hash]
            member = state.members.get(statement.by)
            role, late = (member.role if member else None), ref.late
            if statement.kind == "entry.corrected":
                batch.corrections.append((ref.body.entry, entry.hash))
        elif isinstance(state, Directory):
            role, late = "authority", False
        batch.rows.append(
            AuditRow(
                position=batch.position,
                stream=statement.stream,
                seq=entry.seq,
                kind=statement.kind,
                by=builder.person(statement.by),
                role=role,
                at=statement.at,
                recorded_at=entry.recorded_at,
                late=bool(late),
                hash=entry.hash,
                kid=statement.kid,
                on_behalf_of=(
                    builder.person(statement.on_behalf_of) if statement.on_behalf_of else None
                ),
            )
        )
        batch.position += 1

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        pending = {row.hash: row for row in batch.rows}
        stored: list[tuple[str, str]] = []
        for target, correction in batch.corrections:
            if target in pending:
                pending[target].corrected_by.append(correction)
            else:
                stored.append((target, correction))
        cursor.executemany(
            "INSERT INTO projection_audit (position, case_id, seq, author, hash, doc)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(r.position, r.stream, r.seq, r.by.id, r.hash, _encode(r)) for r in batch.rows],
        )
        for target, correction in stored:
            cursor.execute("SELECT doc FROM projection_audit WHERE hash = ?", (target,))
            (doc,) = cursor.fetchall()[0]
            row = msgspec.json.decode(doc, type=AuditRow)
            row.corrected_by.append(correction)
            cursor.execute(
                "UPDATE projection_audit SET doc = ? WHERE hash = ?", (_encode(row), target)
            )


class AccessProjection(Projection):
    """Who read which case, when, and with which token (reviewers' reads are all recorded)."""

    name = "access"
    tables = ("projection_access",)

    def on_record(self, batch: Batch, record: Record, position: int) -> None:
        if isinstance(record, ReadRecorded):
            batch.reads.append(
                AccessRow(
                    position=position,
                    stream=record.stream,
                    what=record.what,
                    by=batch.builder.person(record.person),
                    token=record.token,
                    at=record.at,
                )
            )

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        cursor.executemany(
            "INSERT INTO projection_access (position, case_id, person, doc) VALUES (?, ?, ?, ?)",
            [(r.position, r.stream, r.by.id, _encode(r)) for r in batch.reads],
        )


PROJECTIONS: tuple[Projection, ...] = (
    PlanProjection(),
    RegisterProjection(),
    TraceProjection(),
    AuditProjection(),
    AccessProjection(),
)


def by_name(name: str) -> Projection:
    """The projection called `name`."""
    for projection in PROJECTIONS:
        if projection.name == name:
            return projection
    raise KeyError(name)
