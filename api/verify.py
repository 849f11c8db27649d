"""`accord verify`: the whole ledger from its store, or through a server's API (signatures,
chains, positions, the Merkle tree against signed checkpoints, and the domain rules case by
case, in one pass on every core), or an evidence bundle offline.

Through the API (`verify_url`) nothing the server says is trusted but what the ledger key
signs. The latest checkpoint is checked with the ledger key; every entry is read, page by page,
from the event stream; the authority key is the one the directory's second entry binds (the
directory is in the signed tree); then the same checking core as for a store
(`ledger.verify.check_log`) checks every entry against the directory's final state, every
chain and every case's rules, that positions are dense from 0, and rebuilds the tree, whose
root must equal the checkpoint's (and a trusted one's) at its size.

Signatures can only be judged once the directory's final state is known (a key revoked or
compromised later invalidates entries recorded before the revocation was), and each case is
checked (its chain and its rules) stream by stream; the log arrives once, in position order.
So the entries are spooled as they arrive into a temporary SQLite file on local disk
(`ledger.spool`), keyed by position and indexed by (stream, seq), and read back from it: memory
stays flat whatever the ledger's size (the directory and a little per stream aside), at the
cost of one local copy of the log.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import aiohttp
import msgspec

from api.client import (
    AccordError,
    AsyncClient,
    EventPage,
    Forbidden,
    Unauthorized,
    Unavailable,
)
from api.schemas import Envelope
from domain.record import DecisionRecord
from domain.replay import CaseReplay, replay_case
from ledger import checkpoint as checkpoints
from ledger import spool as spooled
from ledger.bundle import BundleReport, verify_bundle
from ledger.checkpoint import Checkpoint, CheckpointInvalid
from ledger.directory import Directory, directory_id
from ledger.entry import Entry, read_entry
from ledger.errors import IntegrityViolation, LedgerError
from ledger.keys import Ed25519PublicKey, kid, public_key_from_b64
from ledger.log import Log
from ledger.spool import Spool, place
from ledger.stream import fold
from ledger.verify import PAGE as ROWS
from ledger.verify import (
    Failure,
    Opener,
    Report,
    Row,
    VerificationFailed,
    check_log,
    fail,
    verify_store,
)

Progress = Callable[[str, int, int], None]  # phase, advance, total

PAGE = 2000  # events asked for per request
_RETRIES = (0.5, 1.0, 2.0)  # seconds to wait before asking again for a page the server failed
_TRANSIENT = ("unavailable", "unreachable")
T = TypeVar("T")


@dataclass(frozen=True)
class LedgerReport:
    """A whole ledger verified."""

    store: Report
    cases: int
    trusted: Checkpoint | None = None  # the checkpoint saved earlier that the log extends


class NotVerifiable(LedgerError):
    """The server cannot be read as a verification needs: unreachable, a token it refuses, or
    answers that are not what the API serves."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def verify_ledger(
    record: DecisionRecord,
    ledger_key: Ed25519PublicKey,
    trusted: Checkpoint | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> LedgerReport:
    """Verify the ledger in its store; raises `VerificationFailed` at the first problem."""
    total = _count(record)
    report = verify_store(
        record,
        ledger_key,
        trusted,
        workers,
        (lambda n: progress("entries", n, total)) if progress else None,
        CaseReplay,
    )
    return LedgerReport(report, _cases(report, record.directory_id), trusted)


def verify_url(
    url: str,
    token: str,
    ledger_key: Ed25519PublicKey,
    trusted: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    origin: str | None = None,
) -> LedgerReport:
    """Verify the whole ledger a server serves, through its API, with a service token that no
    organisation limits; `trusted` is a checkpoint's signed note saved earlier, `origin` the
    ledger's if known (else the one its checkpoint names). Raises `VerificationFailed` at the
    first problem, `NotVerifiable` if the server cannot be read."""
    with tempfile.TemporaryDirectory(prefix="accord-verify-") as scratch:
        spool = Spool(Path(scratch) / "log.db")
        try:
            downloaded = asyncio.run(
                _download(url, token, ledger_key, origin, trusted, spool, progress)
            )
            total = spool.size()
            report = check_log(
                downloaded,
                downloaded.trusted,
                workers,
                (lambda n: progress("entries", n, total)) if progress else None,
                CaseReplay,
            )
        finally:
            spool.close()
    return LedgerReport(report, _cases(report, downloaded.directory().id), downloaded.trusted)


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


def _cases(report: Report, directory: UUID) -> int:
    """How many of the streams verified are cases (every one but the directory)."""
    return sum(1 for stream in report.stream_ids if stream != str(directory))


def _replay_entries(case: UUID, entries: list[Entry], directory: Directory) -> None:
    replay_case(case, entries, directory)


# -- reading the log through the API ------------------------------------------------------------


@dataclass
class _Downloaded:
    """The log as the server served it, spooled: the checking core's source."""

    spool: Spool
    ledger_key: Ed25519PublicKey
    origin: str
    signed: list[Checkpoint]
    trusted: Checkpoint | None = None
    stop: Failure | None = None  # where the log stopped making sense as it arrived
    _directory: Directory = field(init=False)

    def __post_init__(self) -> None:
        self._directory = Directory(directory_id(self.origin))

    @property
    def authority(self) -> Ed25519PublicKey:
        """The key the directory's second entry binds to the authority its first registers."""
        directory = self._directory
        record = directory.keys.get(directory.authority_kid or "")
        if (
            record is None
            or directory.authority is None
            or record.person != directory.authority
            or kid(record.public) != record.kid
        ):
            stream = str(directory.id)
            fail(
                self.spool.position(stream, 2),
                "directory",
                2,
                "the directory does not open with the authority binding its own key",
            )
        return record.public

    def latest(self) -> Checkpoint:
        return max(self.signed, key=lambda checkpoint: checkpoint.size)

    def directory(self) -> Directory:
        return self._directory

    def checkpoints(self) -> Iterator[Checkpoint]:
        return iter(sorted(self.signed, key=lambda checkpoint: checkpoint.size))

    def rows(self) -> Iterator[list[Row]]:
        """The spooled entries in position order, each keyed by its position."""
        batch: list[Row] = []
        for position, stream, seq, sealed, data in self.spool.rows():
            batch.append((position, _raw(sealed), stream, seq, position, data))
            if len(batch) >= ROWS:
                yield batch
                batch = []
        if batch:
            yield batch
        if self.stop is not None:
            raise VerificationFailed(self.stop)

    def streams(self) -> Opener:
        return (spooled.reader, (str(self.spool.path),))

    def name(self, stream: str) -> str:
        return stream

    def position(self, key: int) -> int | None:
        return key

    def checkpoint(self, note: str) -> Checkpoint:
        """A checkpoint the server served, checked with the ledger key."""
        try:
            checked = checkpoints.parse(note, self.origin, self.ledger_key)
        except CheckpointInvalid as exc:
            fail(None, "checkpoint", 0, exc.detail)
        return checked

    def take(self, events: list[Envelope], expected: int) -> int:
        """Spool a page of events that should start at position `expected`, folding the
        directory's entries as they come; returns the next position expected, or -1 where the
        log stops making sense (the rest is not read; `rows` fails there once the entries
        before are checked, as one of them may be what broke it)."""
        rows: list[spooled.Row] = []
        directory = self._directory
        for envelope in events:
            sequence = envelope.sequence
            if not (sequence.isascii() and sequence.isdigit() and int(sequence) == expected):
                self.stop = Failure(
                    expected,
                    "log",
                    0,
                    f"the entry at this position is missing: the server sent {sequence!r}",
                )
                break
            data = bytes(envelope.data)
            stream, seq = place(data)
            rows.append((expected, stream, seq, envelope.entryhash, data))
            if stream == directory.key:
                self.stop = _fold(directory, expected, data, seq)
                if self.stop is not None:
                    break
            expected += 1
        self.spool.add(rows)
        return -1 if self.stop is not None else expected


def _raw(entry_hash: str) -> bytes:
    """An entry hash the server gave, as bytes; none (it matches nothing) unless it is
    lowercase hex, as the API gives one."""
    try:
        raw = bytes.fromhex(entry_hash)
    except ValueError:
        return b""
    return raw if raw.hex() == entry_hash else b""


def _fold(directory: Directory, position: int, data: bytes, seq: int) -> Failure | None:
    """Fold a directory entry in (as a store's verification replays the directory first);
    what is wrong if it does not fold."""
    try:
        fold(directory, (read_entry(data),))
    except IntegrityViolation as exc:
        return Failure(position, exc.stream, exc.seq, exc.problem)
    except (LedgerError, KeyError) as exc:  # unknown person or key; or an unreadable entry
        return Failure(position, directory.key, seq, f"the directory entry does not fold: {exc}")
    return None


async def _download(
    url: str,
    token: str,
    ledger_key: Ed25519PublicKey,
    origin: str | None,
    trusted: str | None,
    spool: Spool,
    progress: Progress | None,
) -> _Downloaded:
    """Check the latest checkpoint, then spool every entry the server serves, in position
    order; then check its latest checkpoint again (it may cover more by then)."""
    async with AsyncClient(url, token) as client:
        note = await _checkpoint(client, url)
        named = origin or note.partition("\n")[0]
        log = _Downloaded(spool, ledger_key, named, [])
        first = log.checkpoint(note)
        log.signed.append(first)
        if trusted is not None:
            log.trusted = checkpoints.parse(trusted, named, ledger_key)
        after, expected = -1, 0
        pending = asyncio.ensure_future(_page(client, url, after))
        try:
            while True:
                page = await pending
                if page.scoped:
                    raise NotVerifiable(
                        "forbidden",
                        "this service token is limited to an organisation and sees only some"
                        " events; verifying the whole ledger needs one that is not",
                    )
                finished = not page.events  # the whole log has no gaps: nothing follows
                if not finished:  # ask for the next page while this one is spooled
                    after = page.next_after
                    pending = asyncio.ensure_future(_page(client, url, after))
                expected = log.take(page.events, expected)
                if progress is not None and page.events:
                    progress("download", len(page.events), max(first.size, expected))
                if finished or expected < 0:
                    break
        finally:
            if not pending.done():
                pending.cancel()
        if log.stop is None:
            # The tree may have grown meanwhile: the latest checkpoint now is checked too,
            # unless it covers entries sealed after the last page was read.
            last = log.checkpoint(await _checkpoint(client, url))
            if last.size != first.size and last.size <= expected:
                log.signed.append(last)
    return log


async def _page(client: AsyncClient, url: str, after: int) -> EventPage:
    """The page of events after `after`; a server error or a dropped connection is retried a
    few times, with back-off."""
    for wait in _RETRIES:
        try:
            return await _fetch(client.event_page(after, PAGE), url)
        except NotVerifiable as exc:
            if exc.code not in _TRANSIENT:
                raise
        await asyncio.sleep(wait)
    return await _fetch(client.event_page(after, PAGE), url)


async def _checkpoint(client: AsyncClient, url: str) -> str:
    """The server's latest signed checkpoint; a server that has none fails verification."""
    try:
        return await _fetch(client.checkpoint(), url)
    except NotVerifiable as exc:
        if exc.code == "not_found":
            fail(None, "log", 0, "no checkpoint has been signed")
        raise


async def _fetch(request: Awaitable[T], url: str) -> T:
    """The answer to a request, its failures translated into what `accord verify` reports."""
    try:
        return await request
    except Unavailable as exc:
        raise NotVerifiable("unavailable", f"the server at {url} failed: {exc}") from None
    except (Unauthorized, Forbidden) as exc:
        needed = "reading every entry needs a service token without organisation"
        raise NotVerifiable(exc.code, f"{exc.detail} ({needed})") from None
    except AccordError as exc:
        raise NotVerifiable(exc.code, exc.detail) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        problem = str(exc) or type(exc).__name__
        raise NotVerifiable("unreachable", f"cannot read {url}: {problem}") from None
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise NotVerifiable("malformed", f"{url} does not answer as the API does: {exc}") from None
