"""Rebuilding a 1,000-entry case from the store (cases per second), next to raw eventsourcing
replay of an aggregate with the same number of events of the same size, in the same run."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

if not __package__:  # run as a file: bench/ must not shadow the `domain` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import Note, Reference, compared, rate, report, store_urls
from domain.record import DecisionRecord
from domain.worked_case import CAST, SCHOOL, birth_date, play
from ledger import keys
from ledger.author import Author
from ledger.authority import Authority
from ledger.store import parse_store

ORIGIN = "bench.example/accord"
ENTRIES = 1000
REBUILDS = {"sqlite": 30, "postgres": 15}
ROUNDS = 3
TARGET = 0.5


def build_case(record: DecisionRecord, authority: Authority) -> tuple[uuid.UUID, str]:
    """The worked case, then opinions until the case has ENTRIES entries."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    authors = {}
    for person in CAST:
        key = keys.generate()
        born = birth_date(start) if person.kind == "child" else None
        person_id = authority.register(person.name, person.kind, born=born)
        authority.bind(person_id, key.public_key())
        authors[person.handle] = Author(ORIGIN, person_id, key)
    case = str(uuid.uuid4())
    school = authority.register_organisation(SCHOOL)
    played = play(case, authors, lambda data: record.submit(data).receipt, start, school)
    # The decision is agreed now; opinions on a new one keep the case growing realistically.
    decision = str(uuid.uuid4())
    lead = authors["okafor"]
    body = {"decision": decision, "question": "Next block?", "required": [lead.person]}
    record.submit(lead.submission(case, "decision.opened", body))
    proposal = record.submit(
        lead.submission(
            case,
            "proposal.made",
            {"decision": decision, "proposal": str(uuid.uuid4()), "title": "Swimming"},
        )
    )
    proposal_id = orjson_body(record, case, proposal.receipt.seq)["proposal"]
    handles = ["grace", "daniel", "sam", "priya"]
    seq = proposal.receipt.seq
    last = ""
    while seq < ENTRIES:
        who = authors[handles[seq % len(handles)]]
        opinion = {
            "decision": decision,
            "proposal": proposal_id,
            "proposal_hash": proposal.receipt.hash,
            "stance": ("support", "concern", "unsure")[seq % 3],
            "reasons": f"Thought number {seq} about how this fits the week.",
        }
        last = who.submission(case, "opinion.given", opinion).decode()
        seq = record.submit(last.encode()).receipt.seq
    assert played.receipts
    return uuid.UUID(case), last


def orjson_body(record: DecisionRecord, case: str, seq: int) -> dict[str, str]:
    return dict(record.entry(uuid.UUID(case), seq).statement.body)


def case_rate(url: str) -> tuple[float, str]:
    authority_key = keys.generate()
    with DecisionRecord(url, ORIGIN, authority_key.public_key()) as record:
        authority = Authority(record, authority_key)
        authority.open("authority")
        case, payload = build_case(record, authority)
        count = REBUILDS[parse_store(url).env["PERSISTENCE_MODULE"].rsplit(".", 1)[1]]

        def run() -> None:
            for _ in range(count):
                assert record.replay(case).version == ENTRIES

        return rate(count, run), payload


def raw_rate(url: str, payload: str, count: int) -> float:
    with Reference(env=parse_store(url).env) as app:
        note = Note()
        for _ in range(ENTRIES - 1):
            note.note(payload)
        app.save(note)

        def run() -> None:
            for _ in range(count):
                assert app.repository.get(note.id).version == ENTRIES

        return rate(count, run)


def main() -> None:
    results = []
    with store_urls() as kinds:
        for store, fresh in kinds:
            ours, raw = [], []
            for round_ in range(ROUNDS):
                value, payload = case_rate(fresh(f"case{round_}"))
                ours.append(value)
                raw.append(raw_rate(fresh(f"raw{round_}"), payload, REBUILDS[store]))
            results.append(compared("case_rebuild_1000", store, "cases/s", ours, raw, TARGET))
    report("domain", results)


if __name__ == "__main__":
    main()
