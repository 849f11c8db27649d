"""The projections: what each keeps, how one entry changes it, and how a batch is written."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from domain.case import Case
from ledger.access import ReadRecorded
from ledger.directory import Directory
from ledger.entry import Entry
from ledger.stream import Record, Stream
from ledger.tables import insert_sql
from projections.database import SCHEMA, Cursor
from projections.documents import AccessRow, AuditRow, Builder, encode, encode_row


@dataclass
class Batch:
    """One projection's work for one batch: what was touched, rows to write, the position."""

    builder: Builder
    position: int
    # Every stream the batch touched (by any key), noted by the follower for all projections.
    cases: dict[str, Stream] = field(default_factory=dict)
    decisions: dict[tuple[str, str], Case] = field(default_factory=dict)
    # Audit rows as written: position, case, seq, author, hash and the encoded AuditRow.
    rows: list[tuple[int, str, int, str, str, bytearray]] = field(default_factory=list)
    # Each correction: the corrected entry's hash, case and seq, and the correcting entry's hash.
    corrections: list[tuple[str, str, int, str]] = field(default_factory=list)
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
        """Delete every row, before a rebuild."""
        for table in self.tables:
            cursor.execute(f"DELETE FROM {table}")

    def rebuilt(self, cursor: Cursor) -> None:
        """Called after a rebuild has applied the log, or failed to."""


class PlanProjection(Projection):
    """Per case: the current plan."""

    name = "plan"
    tables = ("projection_plans",)

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        upsert(
            cursor,
            "projection_plans (case_id, doc)",
            "case_id",
            (
                (case.key, batch.builder.plan_json(case))
                for case in batch.cases.values()
                if isinstance(case, Case)
            ),
        )


class RegisterProjection(PlanProjection):
    """Per case: consents and information sharing."""

    name = "register"
    tables = ("projection_registers",)

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        upsert(
            cursor,
            "projection_registers (case_id, doc)",
            "case_id",
            (
                (case.key, encode(batch.builder.register(case)))
                for case in batch.cases.values()
                if isinstance(case, Case)
            ),
        )


class TraceProjection(Projection):
    """Per decision: how it was reached."""

    name = "trace"
    tables = ("projection_traces",)

    def on_entry(self, batch: Batch, state: Stream, entry: Entry) -> None:
        if not isinstance(state, Case):
            return
        ref = state.entries[entry.hash]
        target = ref.about
        registers = ref.kind.startswith(("consent.", "information."))
        if (
            target is None
            and not registers
            and ref.decision is not None
            and batch.decisions.get((state.key, ref.decision)) is state
        ):
            return  # noted in this batch already, and the decision it revisits with it
        decisions: set[str | None] = {ref.decision}
        if target in state.entries:
            decisions.add(state.entries[target].decision)
        if registers:
            decisions.update(state.decisions)  # registers appear in every trace of the case
        for decision in list(decisions):
            revisited = state.decisions[decision].revisits if decision in state.decisions else None
            decisions.add(revisited)  # its trace shows it superseded once this one is agreed
        for decision in decisions:
            if decision is not None:
                batch.decisions[(state.key, decision)] = state

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        upsert(
            cursor,
            "projection_traces (case_id, decision_id, doc)",
            "case_id, decision_id",
            (
                (case_id, decision, batch.builder.trace_json(case, case.decisions[decision]))
                for (case_id, decision), case in batch.decisions.items()
            ),
        )


class AuditProjection(Projection):
    """Every entry in ledger order, as a reviewer reads it; also who contributed what."""

    name = "audit"
    tables = ("projection_audit",)

    def on_entry(self, batch: Batch, state: Stream, entry: Entry) -> None:
        statement = entry.header
        builder = batch.builder
        role = late = None
        if isinstance(state, Case):
            ref = state.entries[entry.hash]
            member = state.members.get(statement.by)
            role, late = (member.role if member else None), ref.late
            if statement.kind == "entry.corrected":
                target = ref.body.entry
                seq = state.entries[target].seq
                batch.corrections.append((target, state.key, seq, entry.hash))
        elif isinstance(state, Directory):
            role, late = "authority", False
        on_behalf_of = statement.on_behalf_of
        row = AuditRow(
            batch.position,
            statement.stream,
            entry.seq,
            statement.kind,
            builder.people.get(statement.by) or builder.person(statement.by),
            role,
            statement.at,
            entry.recorded_at,
            bool(late),
            entry.hash,
            statement.kid,
            builder.person(on_behalf_of) if on_behalf_of else None,
        )
        # Encoded at once: a correction later in the batch decodes its row again (rarely).
        batch.rows.append((row.position, row.stream, row.seq, row.by.id, row.hash, encode_row(row)))
        batch.position += 1

    def flush(self, cursor: Cursor, batch: Batch) -> None:
        stored: dict[tuple[str, int], list[str]] = {}
        if batch.corrections:
            pending = {row[4]: index for index, row in enumerate(batch.rows)}
            for target, case_id, seq, correction in batch.corrections:
                if target in pending:
                    index = pending[target]
                    row = msgspec.json.decode(batch.rows[index][5], type=AuditRow)
                    row.corrected_by.append(correction)
                    batch.rows[index] = (*batch.rows[index][:5], encode_row(row))
                else:
                    stored.setdefault((case_id, seq), []).append(correction)
        cursor.copy(
            "projection_audit", ("position", "case_id", "seq", "author", "hash", "doc"), batch.rows
        )
        # One read and one write per corrected row: the writes may run only after the batch.
        for (case_id, seq), corrections in stored.items():
            where = " WHERE case_id = ? AND seq = ?"
            cursor.execute("SELECT doc FROM projection_audit" + where, (case_id, seq))
            (doc,) = cursor.fetchall()[0]
            row = msgspec.json.decode(doc, type=AuditRow)
            row.corrected_by += corrections
            cursor.execute(
                "UPDATE projection_audit SET doc = ?" + where, (encode(row), case_id, seq)
            )

    def drop(self, cursor: Cursor) -> None:
        # Rows go in in position order, but their hashes are random: kept up to date row by
        # row, the hash index costs a rebuild more than all the rest of its writes. It is
        # made again, in one sorted pass, once the rebuild is over; no rebuild reads it.
        cursor.execute("DROP INDEX IF EXISTS projection_audit_hash")
        super().drop(cursor)

    def rebuilt(self, cursor: Cursor) -> None:
        cursor.execute(_HASH_INDEX)


_HASH_INDEX = next(statement for statement in SCHEMA if "projection_audit_hash" in statement)


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
            [(r.position, r.stream, r.by.id, encode(r)) for r in batch.reads],
        )


def upsert(cursor: Cursor, into: str, key: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert or replace documents (each row's last value) in `into` ("table (columns)"), keyed
    by `key`, several to a statement and about a megabyte or two each.

    Batches are written by a thread of their own, which takes the GIL back after every
    statement and may wait a switch interval for it each time: a statement per document would
    leave it behind. One for a whole batch would have the database copy every document at once.
    """
    columns = into[into.index("(") + 1 : -1].split(", ")
    then = f" ON CONFLICT ({key}) DO UPDATE SET doc = excluded.doc"
    values: list[Any] = []
    count = size = 0
    for row in rows:
        values += row
        count += 1
        size += len(row[-1])
        if size >= _STATEMENT_BYTES:
            cursor.execute(insert_sql(into, len(columns), count) + then, values)
            values, count, size = [], 0, 0
    if count:
        cursor.execute(insert_sql(into, len(columns), count) + then, values)


_STATEMENT_BYTES = 2_000_000


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
