"""`accord verify`: the whole ledger from its store (signatures, chains, positions, the Merkle
tree against every signed checkpoint, then the domain rules case by case, on every core), or
an evidence bundle offline."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from uuid import UUID

from domain.record import DecisionRecord
from domain.replay import replay_case
from ledger.bundle import BundleReport, verify_bundle
from ledger.checkpoint import Checkpoint
from ledger.directory import Directory
from ledger.entry import Entry
from ledger.errors import IntegrityViolation
from ledger.keys import Ed25519PublicKey, public_key_b64, public_key_from_b64
from ledger.log import Log
from ledger.verify import Failure, Report, VerificationFailed, verify_store

Progress = Callable[[str, int, int], None]  # phase, advance, total


@dataclass(frozen=True)
class LedgerReport:
    """A whole ledger verified."""

    store: Report
    cases: int


def verify_ledger(
    record: DecisionRecord,
    ledger_key: Ed25519PublicKey,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> LedgerReport:
    """Verify the ledger in its store; raises `VerificationFailed` at the first problem."""
    workers = workers or os.cpu_count() or 1
    total = _count(record)
    report = verify_store(
        record,
        ledger_key,
        trusted,
        workers,
        (lambda n: progress("entries", n, total)) if progress else None,
    )
    cases = [UUID(s) for s in report.stream_ids if UUID(s) != record.directory_id]
    directory_size = record.directory().version
    args = (record.store.url, record.origin, public_key_b64(record.authority_key))
    with ProcessPoolExecutor(workers, initializer=_open, initargs=args) as pool:
        results = pool.map(_replay, cases, chunksize=4)
        for case, (count, failure) in zip(cases, results, strict=True):
            if failure is not None:
                log = Log(record)
                try:
                    rows = log.tables.query(
                        "SELECT position FROM log_entries WHERE stream = ? AND seq = ?",
                        (str(case), failure[0]),
                    )
                finally:
                    log.close()
                position = int(rows[0][0]) if rows else None
                raise VerificationFailed(Failure(position, str(case), failure[0], failure[1]))
            if progress is not None:
                progress("rules", count, report.entries - directory_size)
    return LedgerReport(report, len(cases))


def verify_file(data: bytes, ledger_key: Ed25519PublicKey) -> BundleReport:
    """Verify an evidence bundle offline, the domain rules included."""
    return verify_bundle(data, ledger_key, _replay_entries)


def ledger_key_from(text: str) -> Ed25519PublicKey:
    """A ledger public key given as base64url text or as a `.pub` file holding it."""
    if os.path.exists(text):
        with open(text) as handle:
            text = handle.read().strip()
    return public_key_from_b64(text)


def _count(record: DecisionRecord) -> int:
    log = Log(record)
    try:
        return log.size()
    finally:
        log.close()


def _replay_entries(case: UUID, entries: list[Entry], directory: Directory) -> None:
    replay_case(case, entries, directory)


# -- worker processes ---------------------------------------------------------------------------

_RECORD: DecisionRecord | None = None
_DIRECTORY: Directory | None = None


def _open(store: str, origin: str, authority: str) -> None:
    global _RECORD, _DIRECTORY
    _RECORD = DecisionRecord(store, origin, public_key_from_b64(authority))
    _DIRECTORY = _RECORD.directory()


def _replay(case: UUID) -> tuple[int, tuple[int, str] | None]:
    assert _RECORD is not None and _DIRECTORY is not None
    entries: Iterator[Entry] = _RECORD.entries(case)
    try:
        return replay_case(case, entries, _DIRECTORY), None
    except IntegrityViolation as exc:
        return exc.seq, (exc.seq, exc.problem)
