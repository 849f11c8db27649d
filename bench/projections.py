"""Projection rebuild throughput (200,000 entries) next to the raw notification-log read rate,
and the rebuild's peak memory at 50,000 and 200,000 entries, on SQLite and PostgreSQL.

rebuild_rate: value entries/s, reference the raw read rate; the target ratio encodes the
absolute 50,000 entries/s on SQLite. rebuild_memory_flatness: value the peak RSS at 50,000
entries, reference the peak at 200,000; a ratio near 1.0 means memory does not grow."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

if not __package__:  # run as a file: bench/ must not shadow the `domain` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import Result, report, store_urls
from domain.record import DecisionRecord
from ledger import keys
from ledger.author import Author
from ledger.authority import Authority
from ledger.entry import make_entry
from ledger.statement import parse_submission
from ledger.stream import ENTRY_TOPIC, EntryRecorded, StatementClaimed, claim_id
from projections.database import Database
from projections.follower import Follower

ORIGIN = "bench.example/accord"
PER_CASE = 1000
SIZES = (50_000, 200_000)
TARGET_RATE = 50_000


def build(url: str, size: int, authority_key: keys.Ed25519PrivateKey | None = None) -> str:
    """A ledger of `size` entries: cases opened through the real write path, then filled with
    signed opinions appended in bulk (correctly chained) so that building it stays quick.

    Its directory is opened with `authority_key` (a new key if none); returns its public key."""
    authority_key = authority_key or keys.generate()
    with DecisionRecord(url, ORIGIN, authority_key.public_key()) as record:
        authority = Authority(record, authority_key)
        authority.open("authority")
        people = {}
        for handle, kind in (("lead", "professional"), ("child", "child"), ("mum", "adult")):
            key = keys.generate()
            person = authority.register(handle, kind)
            authority.bind(person, key.public_key())
            people[handle] = Author(ORIGIN, person, key)
        lead, mum = people["lead"], people["mum"]
        count = record.size()
        while count < size:
            case = str(uuid.uuid4())
            decision, proposal = str(uuid.uuid4()), str(uuid.uuid4())
            for who, kind, body in (
                (
                    lead,
                    "case.opened",
                    {"child": people["child"].person, "title": "t", "lead": lead.person},
                ),
                (
                    lead,
                    "participant.joined",
                    {"person": mum.person, "role": "parent", "parental_responsibility": True},
                ),
                (
                    lead,
                    "decision.opened",
                    {"decision": decision, "question": "q", "required": [lead.person, mum.person]},
                ),
                (lead, "proposal.made", {"decision": decision, "proposal": proposal, "title": "p"}),
            ):
                receipt = record.submit(who.submission(case, kind, body)).receipt
            proposal_hash = record.entry(uuid.UUID(case), receipt.seq).hash
            state = record.stream(uuid.UUID(case))
            seq, prev, stamp = state.version, state.head, state.recorded_at
            events: list[object] = []
            count += 4
            for n in range(max(0, min(PER_CASE - 4, size - count))):
                body = {
                    "decision": decision,
                    "proposal": proposal,
                    "proposal_hash": proposal_hash,
                    "stance": "support",
                    "reasons": f"Opinion number {n} on this option.",
                }
                submission = parse_submission(mum.submission(case, "opinion.given", body))
                seq += 1
                count += 1
                entry = make_entry(submission.statement_bytes, submission.sig, seq, prev, stamp)
                prev = entry.hash
                events += [
                    EntryRecorded(uuid.UUID(case), seq, entry),
                    StatementClaimed(claim_id(submission.statement.id), 1, case, seq, entry.hash),
                ]
                if len(events) >= 400:
                    record.events.put(events)  # type: ignore[arg-type]
                    events = []
            if events:
                record.events.put(events)  # type: ignore[arg-type]
        return keys.public_key_b64(authority_key)


def raw_read_rate(record: DecisionRecord) -> float:
    started, count, start = time.perf_counter(), 0, 1
    while page := record.recorder.select_notifications(
        start=start, limit=1000, topics=[ENTRY_TOPIC]
    ):
        count += len(page)
        start = page[-1].id + 1
    return count / (time.perf_counter() - started)


def rebuild(url: str, authority: str) -> tuple[float, int]:
    """Rebuild every projection; returns (entries per second, peak RSS in KiB)."""
    with DecisionRecord(url, ORIGIN, keys.public_key_from_b64(authority)) as record:
        database = Database(record.store)
        follower = Follower(record, database)
        started = time.perf_counter()
        count = follower.rebuild()
        elapsed = time.perf_counter() - started
        database.close()
    return count / elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--rebuild":  # one measurement in a fresh process
        rate, peak = rebuild(sys.argv[2], sys.argv[3])
        print(f"{rate} {peak}")
        return
    results = []
    with store_urls() as kinds:
        for store, fresh in kinds:
            peaks = {}
            for size in SIZES:
                url = fresh(f"p{size}")
                authority = build(url, size)
                out = subprocess.run(
                    [sys.executable, "-m", "bench.projections", "--rebuild", url, authority],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                rate, peaks[size] = float(out[0]), int(out[1])
                if size == SIZES[-1]:
                    with DecisionRecord(url, ORIGIN, keys.public_key_from_b64(authority)) as record:
                        raw = raw_read_rate(record)
                    # The target is absolute (50,000 entries/s on SQLite), expressed as a ratio.
                    target = TARGET_RATE / raw if store == "sqlite" else 0.0
                    results.append(
                        Result("rebuild_rate", store, rate, "entries/s", raw, rate / raw, target)
                    )
            small, large = peaks[SIZES[0]], peaks[SIZES[-1]]
            # Flat memory: the peak at 50k over the peak at 200k is 1.0 when perfectly flat.
            results.append(
                Result("rebuild_memory_flatness", store, small, "KiB", large, small / large, 0.8)
            )
    report("projections", results)


if __name__ == "__main__":
    main()
