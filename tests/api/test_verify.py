"""Verifying a whole ledger, on each store: a sealed ledger holding the worked case verifies, and
every change made behind the ledger's back is named by its global position, stream and seq."""

from __future__ import annotations

import multiprocessing
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from api import tokens
from api.cli import main
from api.home import Home
from api.tokens import Scope
from api.verify import verify_ledger, verify_url
from domain.record import DecisionRecord
from domain.worked_case import SCHOOL, play
from ledger import checkpoint as checkpoints
from ledger import keys
from ledger import verify as verifier
from ledger.author import Author
from ledger.authority import Authority
from ledger.canonical import canonical, loads
from ledger.checkpoint import Checkpoint
from ledger.clock import format_recorded
from ledger.entry import Entry, make_entry
from ledger.keys import Ed25519PrivateKey
from ledger.log import Log
from ledger.sealer import Sealer
from ledger.statement import sign
from ledger.store import parse_store
from ledger.stream import EntryRecorded
from ledger.verify import Failure, VerificationFailed
from tests.api.conftest import serve_in_thread
from tests.api.test_cli import CLI
from tests.conftest import PG_DSN, World, create_schema, drop_schema
from tests.conftest import tamper as tamper_store
from tests.domain.conftest import WorkedCase, cast

ORIGIN = "clinic.example/accord"
# The authority and its key, seven people with a key each, the school and a records service.
DIRECTORY_SIZE = 18
CASE_SIZE = 25


def tamper(url: str, stream: uuid.UUID, seq: int, state: bytes | None) -> None:
    """Overwrite (or, with None, delete) a stored entry of the decision record behind its back."""
    tamper_store(url, stream, seq, state, DecisionRecord)


@dataclass
class Sealed:
    """A home whose ledger holds the worked case, sealed twice: once when only the directory
    was written (the `early` checkpoint) and once after the case was played."""

    url: str
    home: Home
    world: World
    worked: WorkedCase
    ledger_key: Ed25519PrivateKey
    early: Checkpoint

    @property
    def record(self) -> DecisionRecord:
        assert isinstance(self.world.ledger, DecisionRecord)
        return self.world.ledger

    @property
    def case(self) -> uuid.UUID:
        return uuid.UUID(self.worked.played.case)

    @property
    def directory(self) -> uuid.UUID:
        return self.record.directory_id

    def seal(self) -> Checkpoint:
        """Seal everything written so far and sign a checkpoint of it."""
        sealer = Sealer(self.record, self.ledger_key)
        try:
            sealer.catch_up()
            latest = sealer.log.checkpoint()
        finally:
            sealer.log.close()
        assert latest is not None
        return latest

    def failure(self, trusted: Checkpoint | None = None) -> Failure | None:
        """What `verify_ledger` reports on a freshly opened ledger, or None if it verifies."""
        record = self.home.open_ledger(self.url)
        try:
            verify_ledger(record, self.ledger_key.public_key(), trusted, workers=1)
        except VerificationFailed as exc:
            return exc.failure
        finally:
            record.close()
        return None

    def entry(self, stream: uuid.UUID, seq: int) -> Entry:
        return self.record.entry(stream, seq)

    def position(self, stream: uuid.UUID, seq: int) -> int:
        log = Log(self.record)
        try:
            position = log.position(self.entry(stream, seq).hash)
        finally:
            log.close()
        assert position is not None
        return position

    def where(self, stream: uuid.UUID, seq: int) -> tuple[int, str, int]:
        """(position, stream, seq) as a failure should name this entry."""
        return self.position(stream, seq), str(stream), seq

    def log_sql(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        """Change the log's own tables behind the sealer's back."""
        log = Log(self.record)
        try:
            with log.tables.transaction() as cursor:
                cursor.execute(sql, params)
        finally:
            log.close()


class Templates:
    """The worked case sealed once per kind of store, then copied row for row into each test's
    own store: the entries, positions, tree and checkpoints are the template's, byte for byte.
    (Playing and sealing it afresh for every test would cost most of these tests' time.)"""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: dict[str, Sealed] = {}
        self.schemas: list[str] = []

    def copy(self, path: Path, store_url: str) -> Sealed:
        """A new home at `path` on the (empty) store, holding a copy of the template."""
        store = parse_store(store_url)
        kind = "postgres" if store.is_postgres else "sqlite"
        template = self.built.get(kind) or self._build(kind)
        shutil.copytree(template.home.path, path)
        config = msgspec.structs.replace(template.home.config, store=store_url)
        (path / "config.json").write_bytes(msgspec.json.encode(config))
        home = Home.load(path)
        if store.is_postgres:
            record = home.open_ledger(store_url)
            Log(record).close()  # creates the log's tables
            _copy_schema(template.url, store_url)
        else:
            with (
                sqlite3.connect(parse_store(template.url).env["SQLITE_DBNAME"]) as source,
                sqlite3.connect(store.env["SQLITE_DBNAME"]) as target,
            ):
                source.backup(target)
            record = home.open_ledger(store_url)
        authority_key = template.world.authority_key
        world = World(
            record, authority_key, Authority(record, authority_key), dict(template.world.people)
        )
        return Sealed(store_url, home, world, template.worked, template.ledger_key, template.early)

    def _build(self, kind: str) -> Sealed:
        if kind == "postgres":
            schema = create_schema()
            self.schemas.append(schema)
            url = f"{PG_DSN}?schema={schema}"
        else:
            url = f"sqlite:///{self.base / 'ledger.db'}"
        built = self.built[kind] = seal_worked_case(self.base / kind, url)
        built.record.close()
        return built

    def close(self) -> None:
        for schema in self.schemas:
            drop_schema(schema)


def _copy_schema(source_url: str, target_url: str) -> None:
    source = parse_store(source_url).env["POSTGRES_SCHEMA"]
    target = parse_store(target_url).env["POSTGRES_SCHEMA"]
    events = f"{DecisionRecord.name.lower()}_events"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for table in (events, "log_entries", "log_nodes", "log_checkpoints"):
            conn.execute(f'INSERT INTO "{target}".{table} SELECT * FROM "{source}".{table}')
        conn.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'),"
            f' (SELECT MAX(notification_id) FROM "{target}".{events}))',
            (f'"{target}".{events}',),
        )


@contextmanager
def worked_case_templates(base: Path) -> Iterator[Templates]:
    templates = Templates(base)
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    with worked_case_templates(tmp_path_factory.mktemp("templates")) as made:
        yield made


@pytest.fixture
def sealed(tmp_path: Path, store_url: str, templates: Templates) -> Iterator[Sealed]:
    state = templates.copy(tmp_path / "home", store_url)
    try:
        yield state
    finally:
        state.record.close()


def seal_worked_case(path: Path, store_url: str) -> Sealed:
    """A new home on the store whose ledger holds the worked case, sealed before and after."""
    home = Home.create(path, ORIGIN, store_url)
    record = home.open_ledger()
    authority_key = keys.load_private_key(home.path / "authority.pem")
    world = World(record, authority_key, Authority(record, authority_key))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    authors = cast(world, start)
    world.authority.register("Records Service", "service")
    ledger_key = home.ledger_key()
    sealer = Sealer(record, ledger_key)
    sealer.catch_up()
    early = sealer.log.checkpoint()
    sealer.log.close()
    assert early is not None and early.size == DIRECTORY_SIZE
    case = str(uuid.uuid4())
    played = play(
        case, authors, lambda data: record.submit(data).receipt, start, world.organisation(SCHOOL)
    )
    state = Sealed(store_url, home, world, WorkedCase(played, authors, start), ledger_key, early)
    assert state.seal().size == DIRECTORY_SIZE + CASE_SIZE
    return state


def named(failure: Failure | None) -> tuple[int | None, str, int]:
    assert failure is not None, "the change went unnoticed"
    return failure.position, failure.stream, failure.seq


def changed_byte(data: bytes, needle: bytes, replacement: bytes) -> bytes:
    """`data` with the first `needle` replaced by a same-length `replacement`."""
    assert needle in data and len(needle) == len(replacement)
    return data.replace(needle, replacement, 1)


def resigned(entry: Entry, author: Any, **changes: str) -> bytes:
    """The entry with its statement changed and signed again by `author`; seq, prev and
    recorded_at are kept."""
    statement = {**loads(entry.statement_bytes), **changes}
    envelope = sign(statement, author.key)
    return make_entry(
        canonical(envelope["statement"]), envelope["sig"], entry.seq, entry.prev, entry.recorded_at
    ).data


# -- what verifies ----------------------------------------------------------------------------


def test_a_sealed_ledger_holding_the_worked_case_verifies(sealed: Sealed) -> None:
    record = sealed.home.open_ledger(sealed.url)
    try:
        report = verify_ledger(record, sealed.ledger_key.public_key(), workers=2)
    finally:
        record.close()

    assert report.cases == 1
    assert report.store.entries == DIRECTORY_SIZE + CASE_SIZE
    assert report.store.streams == 2
    assert report.store.checkpoints == 2
    assert report.store.checkpoint.size == DIRECTORY_SIZE + CASE_SIZE
    assert report.store.unsealed == 0


def test_accord_verify_exits_0_on_a_sealed_ledger_and_says_what_it_checked(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI(sealed.home.path, sealed.url, capsys)

    code, out, _ = cli("verify", "--workers", "1")

    assert code == 0
    assert out.startswith(f"verified {DIRECTORY_SIZE + CASE_SIZE} entries in 2 streams (1 cases)")
    assert "all 2 signed checkpoints" in out


def test_entries_recorded_after_the_last_checkpoint_verify_as_not_yet_sealed(
    sealed: Sealed,
) -> None:
    grace = sealed.worked.authors["grace"]
    sealed.record.submit(
        grace.submission(
            str(sealed.case),
            "dissent.recorded",
            {"decision": sealed.worked.played.decision, "reasons": "On reflection, no."},
        )
    )
    record = sealed.home.open_ledger(sealed.url)
    try:
        report = verify_ledger(record, sealed.ledger_key.public_key(), workers=1)
    finally:
        record.close()

    assert report.store.unsealed == 1
    assert report.store.entries == DIRECTORY_SIZE + CASE_SIZE + 1


# -- changed entries --------------------------------------------------------------------------


def test_one_changed_byte_of_statement_text_is_named_by_position_stream_and_seq(
    sealed: Sealed,
) -> None:
    seq = sealed.worked.played.receipts["view"].seq
    where = sealed.where(sealed.case, seq)
    original = sealed.entry(sealed.case, seq).data
    tamper(sealed.url, sealed.case, seq, changed_byte(original, b"swimming", b"swimmin!"))

    failure = sealed.failure()

    assert named(failure) == where
    assert failure is not None and "signature" in failure.problem


@pytest.mark.parametrize("digit", [b"1", b"3"], ids=["earlier", "later"])
def test_one_changed_byte_of_recorded_at_is_named_by_position_stream_and_seq(
    sealed: Sealed, digit: bytes
) -> None:
    # The author's signature does not cover recorded_at: the chain and the sealed hash do.
    seq = sealed.worked.played.receipts["opinion:daniel"].seq
    where = sealed.where(sealed.case, seq)
    original = sealed.entry(sealed.case, seq).data
    needle = b'"recorded_at":"2'
    tamper(sealed.url, sealed.case, seq, changed_byte(original, needle, needle[:-1] + digit))

    assert named(sealed.failure()) == where


def test_one_changed_byte_of_a_directory_entry_is_named_by_position_stream_and_seq(
    sealed: Sealed,
) -> None:
    seq = 5  # Dr Okafor's registration
    where = sealed.where(sealed.directory, seq)
    original = sealed.entry(sealed.directory, seq).data
    tamper(sealed.url, sealed.directory, seq, changed_byte(original, b"Okafor", b"Okafot"))

    assert named(sealed.failure()) == where


@pytest.mark.parametrize("step", ["opinion:grace", "withdraw"], ids=["middle", "last"])
def test_a_deleted_entry_is_named_by_the_position_it_held(sealed: Sealed, step: str) -> None:
    seq = sealed.worked.played.receipts[step].seq
    where = sealed.where(sealed.case, seq)
    tamper(sealed.url, sealed.case, seq, None)

    failure = sealed.failure()

    assert named(failure) == where
    assert failure is not None and "missing" in failure.problem


def test_an_altered_entry_is_named_before_a_later_one_that_was_deleted(sealed: Sealed) -> None:
    seq = sealed.worked.played.receipts["view"].seq
    where = sealed.where(sealed.case, seq)
    original = sealed.entry(sealed.case, seq).data
    tamper(sealed.url, sealed.case, seq, changed_byte(original, b"swimming", b"swimmin!"))
    tamper(sealed.url, sealed.case, sealed.worked.played.receipts["withdraw"].seq, None)

    assert named(sealed.failure()) == where


def test_two_swapped_entries_are_named_at_the_first_position_they_occupy(sealed: Sealed) -> None:
    first = sealed.worked.played.receipts["opinion:grace"].seq
    second = sealed.worked.played.receipts["opinion:daniel"].seq
    position = sealed.position(sealed.case, first)
    a, b = sealed.entry(sealed.case, first).data, sealed.entry(sealed.case, second).data
    tamper(sealed.url, sealed.case, first, b)
    tamper(sealed.url, sealed.case, second, a)

    at, stream, seq = named(sealed.failure())

    # The seq named may be the slot's or the one the misplaced entry claims: both point here.
    assert (at, stream) == (position, str(sealed.case))
    assert seq in (first, second)


def test_entries_swapped_between_streams_are_named_at_the_first_position(sealed: Sealed) -> None:
    # Both are validly signed: only where they sit is wrong.
    directory_seq, case_seq = DIRECTORY_SIZE, 1
    position = sealed.position(sealed.directory, directory_seq)
    a = sealed.entry(sealed.directory, directory_seq).data
    b = sealed.entry(sealed.case, case_seq).data
    tamper(sealed.url, sealed.directory, directory_seq, b)
    tamper(sealed.url, sealed.case, case_seq, a)

    failure = sealed.failure()

    assert failure is not None and failure.position == position


# -- a shortened log --------------------------------------------------------------------------


@pytest.mark.parametrize("removed", [1, 3])
def test_a_truncated_log_is_named_where_the_signed_checkpoint_says_entries_are(
    sealed: Sealed, removed: int
) -> None:
    size = DIRECTORY_SIZE + CASE_SIZE
    kept = size - removed
    for seq in range(CASE_SIZE - removed + 1, CASE_SIZE + 1):
        tamper(sealed.url, sealed.case, seq, None)
    # Whoever truncated the store also removed the positions and the tree nodes it covered.
    sealed.log_sql("DELETE FROM log_entries WHERE position >= ?", (kept,))
    for level in range(size.bit_length()):
        sealed.log_sql(
            "DELETE FROM log_nodes WHERE level = ? AND (idx + 1) * ? > ?", (level, 2**level, kept)
        )

    failure = sealed.failure()

    assert named(failure) == (kept, "log", 0)
    assert failure is not None and "removed" in failure.problem


# -- keys and signatures ----------------------------------------------------------------------


def grace_binding(sealed: Sealed) -> Entry:
    grace = sealed.worked.authors["grace"].person
    for entry in sealed.record.entries(sealed.directory):
        if entry.statement.kind == "key.bound" and entry.statement.body["person"] == grace:
            return entry
    raise AssertionError("Grace's key was never bound")


@pytest.mark.parametrize("kid_too", [True, False], ids=["key-and-kid", "key-only"])
def test_a_replaced_key_binding_is_named_at_the_directory_entry_that_binds_it(
    sealed: Sealed, kid_too: bool
) -> None:
    binding = grace_binding(sealed)
    where = sealed.where(sealed.directory, binding.seq)
    forged = keys.generate()
    statement = loads(binding.statement_bytes)
    statement["body"]["public_key"] = keys.public_key_b64(forged)
    if kid_too:
        statement["body"]["kid"] = keys.kid(forged)
    data = make_entry(
        canonical(statement), binding.sig, binding.seq, binding.prev, binding.recorded_at
    ).data
    tamper(sealed.url, sealed.directory, binding.seq, data)

    assert named(sealed.failure()) == where


def test_an_entry_re_signed_with_another_members_key_is_named(sealed: Sealed) -> None:
    # A valid signature by a valid key, but not a key of the author the entry names.
    seq = sealed.worked.played.receipts["opinion:grace"].seq
    where = sealed.where(sealed.case, seq)
    daniel = sealed.worked.authors["daniel"]
    entry = sealed.entry(sealed.case, seq)
    tamper(sealed.url, sealed.case, seq, resigned(entry, daniel, kid=daniel.kid))

    failure = sealed.failure()

    assert named(failure) == where
    assert failure is not None and "not bound" in failure.problem


def test_an_entry_re_attributed_and_re_signed_by_another_member_is_named(sealed: Sealed) -> None:
    # Signature, key and author now agree: only the sealed entry hash (and the chain) tell.
    seq = sealed.worked.played.receipts["opinion:grace"].seq
    where = sealed.where(sealed.case, seq)
    daniel = sealed.worked.authors["daniel"]
    entry = sealed.entry(sealed.case, seq)
    tamper(sealed.url, sealed.case, seq, resigned(entry, daniel, kid=daniel.kid, by=daniel.person))

    failure = sealed.failure()

    assert named(failure) == where
    assert failure is not None and "sealed" in failure.problem


def test_the_last_entry_re_attributed_and_re_signed_is_named(sealed: Sealed) -> None:
    # The last entry has no successor whose prev would expose it: the seal alone does.
    seq = CASE_SIZE
    where = sealed.where(sealed.case, seq)
    grace = sealed.worked.authors["grace"]
    entry = sealed.entry(sealed.case, seq)
    tamper(sealed.url, sealed.case, seq, resigned(entry, grace, kid=grace.kid, by=grace.person))

    assert named(sealed.failure()) == where


def test_a_directory_entry_binding_a_key_to_an_unknown_person_is_named(sealed: Sealed) -> None:
    binding = grace_binding(sealed)
    where = sealed.where(sealed.directory, binding.seq)
    statement = loads(binding.statement_bytes)
    statement["body"]["person"] = str(uuid.uuid4())
    data = make_entry(
        canonical(statement), binding.sig, binding.seq, binding.prev, binding.recorded_at
    ).data
    tamper(sealed.url, sealed.directory, binding.seq, data)

    failure = sealed.failure()

    assert named(failure) == where
    assert failure is not None and "is not registered" in failure.problem


def append_to_the_directory(sealed: Sealed, kind: str, body: dict[str, Any]) -> int:
    """A directory entry signed by the authority and chained like any entry, but written past
    the directory's rules; then sealed. Returns its seq."""
    record = sealed.record
    person = record.directory().authority
    assert person is not None
    authority = Author(ORIGIN, person, sealed.world.authority_key)
    envelope = sign(authority.statement(str(sealed.directory), kind, body), authority.key)
    head = record.entry(sealed.directory, DIRECTORY_SIZE)
    seq = DIRECTORY_SIZE + 1
    entry = make_entry(
        canonical(envelope["statement"]),
        envelope["sig"],
        seq,
        head.hash,
        max(head.recorded_at, format_recorded(datetime.now(UTC))),
    )
    record.events.put([EntryRecorded(sealed.directory, seq, entry)])
    sealed.seal()
    return seq


@pytest.mark.parametrize("kind", ["key.revoked", "reviewer.appointed"])
def test_a_directory_entry_naming_an_unknown_key_or_person_is_named(
    sealed: Sealed, kind: str
) -> None:
    # Signed by the authority and in its place in the chain: only folding it tells.
    unknown = keys.kid(keys.generate())
    body = (
        {"kid": unknown, "reason": "Lost."}
        if kind == "key.revoked"
        else {"person": str(uuid.uuid4())}
    )
    seq = append_to_the_directory(sealed, kind, body)

    failure = sealed.failure()

    assert named(failure) == sealed.where(sealed.directory, seq)
    assert failure is not None
    assert ("is not bound" if kind == "key.revoked" else "is not registered") in failure.problem


def test_a_stream_that_ends_elsewhere_for_its_worker_is_named(
    sealed: Sealed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each stream is read twice, in log order and then seq by seq: both must end alike (as
    # they do unless the store changes underneath). A worker forked from here reads short.
    monkeypatch.setattr(verifier, "workers_context", lambda: multiprocessing.get_context("fork"))
    read = verifier.StoreStreams.stream

    def short(self: verifier.StoreStreams, stream: str) -> Iterator[verifier.StreamRow]:
        rows = list(read(self, stream))
        return iter(rows[:-1] if stream == str(sealed.case) else rows)

    monkeypatch.setattr(verifier.StoreStreams, "stream", short)

    failure = sealed.failure()

    assert named(failure) == (None, "log", 0)
    assert failure is not None
    assert failure.problem == f"stream {sealed.case}: the stream changed while it was verified"


# -- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["early", "latest"])
def test_a_checkpoint_re_signed_with_another_key_is_named_by_its_size(
    sealed: Sealed, which: str
) -> None:
    size = sealed.early.size if which == "early" else DIRECTORY_SIZE + CASE_SIZE
    log = Log(sealed.record)
    stored = log.checkpoint_at(size)
    log.close()
    assert stored is not None
    forged = checkpoints.sign(ORIGIN, size, stored.root, keys.generate())
    sealed.log_sql("UPDATE log_checkpoints SET note = ? WHERE size = ?", (forged.note, size))

    failure = sealed.failure()

    assert named(failure) == (size, "log", 0)
    assert failure is not None and "signature" in failure.problem


def test_a_signed_checkpoint_of_another_tree_is_named_where_the_trees_part(sealed: Sealed) -> None:
    # The ledger key signed a root the entries do not give (a sealer fooled, or its key stolen).
    size = sealed.early.size
    forged = checkpoints.sign(ORIGIN, size, b"\x07" * 32, sealed.ledger_key)
    sealed.log_sql(
        "UPDATE log_checkpoints SET root = ?, note = ? WHERE size = ?",
        (forged.root, forged.note, size),
    )

    failure = sealed.failure()

    assert named(failure) == sealed.where(sealed.directory, DIRECTORY_SIZE)
    assert failure is not None and "rewritten" in failure.problem


def test_no_checkpoint_at_all_does_not_verify(sealed: Sealed) -> None:
    sealed.log_sql("DELETE FROM log_checkpoints")

    failure = sealed.failure()

    assert failure is not None and "no checkpoint" in failure.problem


# -- a checkpoint trusted from earlier -------------------------------------------------------


def trusted(sealed: Sealed, checkpoint: Checkpoint) -> Checkpoint:
    """The checkpoint as a reviewer saved it: only its signed note, parsed again."""
    return checkpoints.parse(checkpoint.note, ORIGIN, sealed.ledger_key.public_key())


def test_a_trusted_checkpoint_verifies_while_the_log_only_grows(sealed: Sealed) -> None:
    latest = sealed.seal()

    assert sealed.failure(trusted(sealed, sealed.early)) is None
    assert sealed.failure(trusted(sealed, latest)) is None


def rewrite_history(sealed: Sealed, drop: int) -> None:
    """Drop the case's last `drop` entries, write a new case instead, and seal the whole log
    afresh with the ledger key: a consistent log, but not the one that was signed before."""
    for seq in range(CASE_SIZE - drop + 1, CASE_SIZE + 1):
        tamper(sealed.url, sealed.case, seq, None)
    for table in ("log_entries", "log_nodes", "log_checkpoints"):
        sealed.log_sql(f"DELETE FROM {table}")
    record = sealed.home.open_ledger(sealed.url)
    try:
        okafor = sealed.worked.authors["okafor"]
        amara = sealed.worked.authors["amara"]
        body = {"child": amara.person, "title": "Another case", "lead": okafor.person}
        for _ in range(drop + 2):
            record.submit(okafor.submission(str(uuid.uuid4()), "case.opened", body))
        sealer = Sealer(record, sealed.ledger_key)
        sealer.catch_up()
        sealer.log.close()
    finally:
        record.close()


def test_a_rewritten_and_resealed_log_verifies_alone_but_not_against_a_trusted_checkpoint(
    sealed: Sealed,
) -> None:
    latest = trusted(sealed, sealed.seal())
    rewrite_history(sealed, drop=3)
    first_changed = latest.size - 3

    assert sealed.failure() is None  # nothing inside the store can tell
    assert sealed.failure(trusted(sealed, sealed.early)) is None  # its history was kept
    failure = sealed.failure(latest)
    assert failure is not None
    assert failure.position == latest.size - 1
    assert failure.position >= first_changed
    assert "rewritten" in failure.problem


def test_a_trusted_checkpoint_larger_than_the_log_means_the_log_was_truncated(
    sealed: Sealed,
) -> None:
    latest = trusted(sealed, sealed.seal())
    for seq in (CASE_SIZE - 1, CASE_SIZE):
        tamper(sealed.url, sealed.case, seq, None)
    for table in ("log_entries", "log_nodes", "log_checkpoints"):
        sealed.log_sql(f"DELETE FROM {table}")
    sealed.seal()

    assert sealed.failure() is None
    failure = sealed.failure(latest)
    assert named(failure) == (latest.size - 2, "log", 0)
    assert failure is not None and "truncated" in failure.problem


def test_accord_verify_trusted_reads_a_saved_checkpoint_file(
    sealed: Sealed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = CLI(sealed.home.path, sealed.url, capsys)
    saved = tmp_path / "checkpoint.txt"
    saved.write_text(sealed.seal().note)

    code, out, _ = cli("verify", "--workers", "1", "--trusted", str(saved))
    assert code == 0
    assert out.endswith(f"it extends the trusted checkpoint of size {DIRECTORY_SIZE + CASE_SIZE}")

    rewrite_history(sealed, drop=1)
    code, out, err = cli("verify", "--workers", "1", "--trusted", str(saved))
    assert (code, out) == (1, "")
    assert err.startswith(
        f"accord: verification_failed: position {DIRECTORY_SIZE + CASE_SIZE - 1}, stream "
    )
    assert "history was rewritten" in err


def test_accord_verify_prints_the_first_bad_entry_on_one_line_and_exits_1(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = sealed.worked.played.receipts["consent:treatment"].seq
    position, stream, _ = sealed.where(sealed.case, seq)
    original = sealed.entry(sealed.case, seq).data
    tamper(sealed.url, sealed.case, seq, changed_byte(original, b"parental", b"Parental"))
    cli = CLI(sealed.home.path, sealed.url, capsys)

    code, out, err = cli("verify", "--workers", "1")

    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith(
        f"accord: verification_failed: position {position}, stream {stream}, seq {seq}: "
    )


# -- the rules, replayed ----------------------------------------------------------------------


def append_an_agreement_nobody_heard_the_child_for(sealed: Sealed, seal: bool = True) -> uuid.UUID:
    """A new case whose fifth entry, an agreement completing a decision before the child was
    heard (R6), is chained and signed like any entry but written past the rules; then sealed
    (unless a running server seals it)."""
    okafor = sealed.worked.authors["okafor"]
    amara = sealed.worked.authors["amara"]
    case = uuid.uuid4()
    decision = str(uuid.uuid4())
    record = sealed.record
    for kind, body in (
        ("case.opened", {"child": amara.person, "title": "Hydrotherapy", "lead": okafor.person}),
        (
            "decision.opened",
            {
                "decision": decision,
                "question": "Should Amara try hydrotherapy?",
                "context": "Her physiotherapist suggested it.",
                "required": [okafor.person],
            },
        ),
        ("proposal.made", {"decision": decision, "proposal": str(uuid.uuid4()), "title": "Try"}),
        (
            "proposal.made",
            {
                "decision": decision,
                "proposal": str(uuid.uuid4()),
                "title": "No",
                "do_nothing": True,
            },
        ),
    ):
        record.submit(okafor.submission(str(case), kind, body))
    proposal = record.entry(case, 3)
    agreement = okafor.statement(
        str(case),
        "agreement.given",
        {
            "decision": decision,
            "proposal": loads(proposal.statement_bytes)["body"]["proposal"],
            "proposal_hash": proposal.hash,
            "rationale": "It will help.",
            "child_view_considered": "Nobody asked her.",
        },
    )
    envelope = sign(agreement, okafor.key)
    head = record.entry(case, 4)
    entry = make_entry(
        canonical(envelope["statement"]),
        envelope["sig"],
        5,
        head.hash,
        max(head.recorded_at, format_recorded(datetime.now(UTC))),
    )
    record.events.put([EntryRecorded(case, 5, entry)])
    if seal:
        sealed.seal()
    return case


def test_an_entry_appended_behind_the_ledgers_back_that_breaks_a_rule_is_named(
    sealed: Sealed,
) -> None:
    case = append_an_agreement_nobody_heard_the_child_for(sealed)

    failure = sealed.failure()

    assert named(failure) == sealed.where(case, 5)
    assert failure is not None and "R6" in failure.problem


def test_a_member_later_appointed_reviewer_leaves_the_ledger_verifying(sealed: Sealed) -> None:
    # Sam wrote in the case as its physiotherapist; becoming a safeguarding reviewer later
    # does not make what the ledger accepted from him then break the rules now.
    sealed.world.authority.appoint_reviewer(sealed.worked.authors["sam"].person)
    sealed.seal()

    assert sealed.failure() is None


def test_an_altered_entry_is_named_before_an_earlier_one_the_rules_refuse(sealed: Sealed) -> None:
    # The rules are judged against the directory and entries the other checks vouch for: a
    # change those checks see is named first, wherever it is.
    append_an_agreement_nobody_heard_the_child_for(sealed)
    grace = sealed.worked.authors["grace"]
    receipt = sealed.record.submit(
        grace.submission(
            str(sealed.case),
            "dissent.recorded",
            {"decision": sealed.worked.played.decision, "reasons": "On reflection, no."},
        )
    ).receipt
    sealed.seal()
    where = sealed.where(sealed.case, receipt.seq)
    original = sealed.entry(sealed.case, receipt.seq).data
    tamper(
        sealed.url, sealed.case, receipt.seq, changed_byte(original, b"reflection", b"Reflection")
    )

    failure = sealed.failure()

    assert named(failure) == where
    assert failure is not None and "signature" in failure.problem


@pytest.mark.parametrize("where", ["directory", "rules"])
def test_the_failure_line_names_the_stream_and_seq_once(
    sealed: Sealed, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    if where == "directory":
        stream, seq = sealed.directory, 5
        position = sealed.position(stream, seq)
        original = sealed.entry(stream, seq).data
        tamper(sealed.url, stream, seq, changed_byte(original, b"Okafor", b"Okafot"))
    else:
        stream, seq = append_an_agreement_nobody_heard_the_child_for(sealed), 5
        position = sealed.position(stream, seq)
    cli = CLI(sealed.home.path, sealed.url, capsys)

    code, _, err = cli("verify", "--workers", "1")

    line = err.splitlines()[-1]
    assert code == 1
    assert line.startswith(
        f"accord: verification_failed: position {position}, stream {stream}, seq {seq}: "
    )
    assert line.count(str(stream)) == 1, line


# -- through the API --------------------------------------------------------------------------


@dataclass
class Remote:
    """The sealed ledger served on a loopback port, with a service token that reads every
    entry; tampering with the store underneath shows through the API."""

    sealed: Sealed
    url: str
    server: DecisionRecord
    token: str

    def issue(self, scope: Scope, organisation: str | None = None) -> str:
        if scope is Scope.SERVICE:
            person = _service(self.server)
        else:
            person = self.sealed.worked.authors["okafor"].person
        return tokens.issue(self.server, person, scope, organisation)

    def failure(
        self, ledger_key: Ed25519PrivateKey | None = None, trusted: str | None = None
    ) -> Failure | None:
        """What `verify_url` reports, or None if the ledger verifies through the API."""
        key = (ledger_key or self.sealed.ledger_key).public_key()
        try:
            verify_url(self.url, self.token, key, trusted, workers=1)
        except VerificationFailed as exc:
            return exc.failure
        return None

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        """`accord verify --url` from the sealed ledger's home (its ledger key by default)."""
        command = CLI(self.sealed.home.path, self.sealed.url, capsys)
        return command("verify", "--url", self.url, "--workers", "1", *args)


def _service(record: DecisionRecord) -> str:
    """The sealed ledger's records service, for service tokens."""
    return next(p.id for p in record.directory().persons.values() if p.kind == "service")


@contextmanager
def serving(sealed: Sealed) -> Iterator[Remote]:
    with serve_in_thread(sealed.home) as server:
        record = server.service.record
        yield Remote(
            sealed, server.url, record, tokens.issue(record, _service(record), Scope.SERVICE)
        )


def wait_until_signed(sealed: Sealed, size: int, timeout: float = 30.0) -> None:
    log = Log(sealed.record)
    try:
        deadline = time.monotonic() + timeout
        while (latest := log.checkpoint()) is None or latest.size < size:
            assert time.monotonic() < deadline, f"no checkpoint of {size} entries was signed"
            time.sleep(0.05)
    finally:
        log.close()


@pytest.fixture
def remote(sealed: Sealed) -> Iterator[Remote]:
    with serving(sealed) as served:
        yield served


def test_the_worked_case_verifies_through_the_api_with_the_counts_of_the_store(
    remote: Remote, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCORD_TOKEN", remote.token)
    store = CLI(remote.sealed.home.path, remote.sealed.url, capsys)
    code, from_store, _ = store("verify", "--workers", "1")
    assert code == 0

    code, through_api, err = remote.cli(capsys)

    assert code == 0, err
    counts = f"verified {DIRECTORY_SIZE + CASE_SIZE} entries in 2 streams (1 cases)"
    assert from_store.startswith(counts + ":")
    assert through_api.startswith(f"{counts} through {remote.url}:")
    assert f"latest: size {DIRECTORY_SIZE + CASE_SIZE}); the rules hold" in through_api
    assert "not sealed" not in through_api
    assert remote.token not in through_api + err


def test_verify_url_reports_what_verify_ledger_reports(remote: Remote) -> None:
    key = remote.sealed.ledger_key.public_key()
    record = remote.sealed.home.open_ledger(remote.sealed.url)
    try:
        from_store = verify_ledger(record, key, workers=1)
    finally:
        record.close()

    through_api = verify_url(remote.url, remote.token, key, workers=2)

    assert through_api.cases == from_store.cases == 1
    for name in ("entries", "streams", "unsealed", "stream_ids"):
        assert getattr(through_api.store, name) == getattr(from_store.store, name), name
    assert through_api.store.checkpoint == from_store.store.checkpoint


def test_entries_beyond_the_servers_checkpoint_are_checked_and_reported_as_not_yet_sealed(
    sealed: Sealed,
) -> None:
    # This test seals, so that an entry has a position no checkpoint covers yet: the server
    # does not lead (its sealer waits) while the test holds the lock.
    sealer = Sealer(sealed.record, sealed.ledger_key, interval=3600)
    assert sealer.leadership.try_acquire()
    grace = sealed.worked.authors["grace"]
    decision = sealed.worked.played.decision
    try:
        with serving(sealed) as remote:
            for reasons in ("On reflection, no.", "Still no."):
                sealed.record.submit(
                    grace.submission(
                        str(sealed.case),
                        "dissent.recorded",
                        {"decision": decision, "reasons": reasons},
                    )
                )
                sealer.run_once()  # the first batch is signed at once, the second not for 1 h

            report = verify_url(remote.url, remote.token, sealed.ledger_key.public_key(), workers=1)
    finally:
        sealer.leadership.release()
        sealer.log.close()

    assert report.store.entries == DIRECTORY_SIZE + CASE_SIZE + 2
    assert report.store.checkpoint.size == DIRECTORY_SIZE + CASE_SIZE + 1
    assert report.store.unsealed == 1


def test_a_changed_byte_underneath_a_running_server_is_named_through_the_api(
    remote: Remote,
) -> None:
    sealed = remote.sealed
    seq = sealed.worked.played.receipts["view"].seq
    where = sealed.where(sealed.case, seq)
    original = sealed.entry(sealed.case, seq).data
    tamper(sealed.url, sealed.case, seq, changed_byte(original, b"swimming", b"swimmin!"))

    failure = remote.failure()

    assert named(failure) == where
    assert failure is not None and "signature" in failure.problem


@pytest.mark.parametrize(
    ("step", "problem"),
    [("opinion:grace", "missing"), ("withdraw", "removed")],
    ids=["middle", "last"],
)
def test_a_deleted_entry_is_named_through_the_api_by_the_position_it_held(
    remote: Remote, step: str, problem: str
) -> None:
    sealed = remote.sealed
    seq = sealed.worked.played.receipts[step].seq
    position = sealed.position(sealed.case, seq)
    tamper(sealed.url, sealed.case, seq, None)

    failure = remote.failure()

    # The server serves nothing at that position: which stream it was in cannot be known.
    assert failure is not None and failure.position == position
    assert problem in failure.problem


@pytest.mark.parametrize("deleted", ["opinion:daniel", "withdraw"], ids=["middle", "last"])
def test_an_altered_entry_is_named_through_the_api_before_a_later_one_that_was_deleted(
    remote: Remote, deleted: str
) -> None:
    sealed = remote.sealed
    seq = sealed.worked.played.receipts["opinion:grace"].seq
    where = sealed.where(sealed.case, seq)
    assert sealed.worked.played.receipts[deleted].seq > seq
    daniel = sealed.worked.authors["daniel"]
    entry = sealed.entry(sealed.case, seq)
    tamper(sealed.url, sealed.case, seq, resigned(entry, daniel, kid=daniel.kid))
    tamper(sealed.url, sealed.case, sealed.worked.played.receipts[deleted].seq, None)

    assert named(remote.failure()) == where


def test_two_swapped_entries_are_named_through_the_api(remote: Remote) -> None:
    sealed = remote.sealed
    first = sealed.worked.played.receipts["opinion:grace"].seq
    second = sealed.worked.played.receipts["opinion:daniel"].seq
    position = sealed.position(sealed.case, first)
    a, b = sealed.entry(sealed.case, first).data, sealed.entry(sealed.case, second).data
    tamper(sealed.url, sealed.case, first, b)
    tamper(sealed.url, sealed.case, second, a)

    at, stream, seq = named(remote.failure())

    assert (at, stream) == (position, str(sealed.case))
    assert seq in (first, second)


def test_a_replaced_key_binding_is_named_through_the_api(remote: Remote) -> None:
    sealed = remote.sealed
    binding = grace_binding(sealed)
    where = sealed.where(sealed.directory, binding.seq)
    forged = keys.generate()
    statement = loads(binding.statement_bytes)
    statement["body"].update(public_key=keys.public_key_b64(forged), kid=keys.kid(forged))
    data = make_entry(
        canonical(statement), binding.sig, binding.seq, binding.prev, binding.recorded_at
    ).data
    tamper(sealed.url, sealed.directory, binding.seq, data)

    assert named(remote.failure()) == where


def test_an_entry_re_signed_with_another_registered_key_is_named_through_the_api(
    remote: Remote,
) -> None:
    sealed = remote.sealed
    seq = sealed.worked.played.receipts["opinion:grace"].seq
    where = sealed.where(sealed.case, seq)
    daniel = sealed.worked.authors["daniel"]
    tamper(
        sealed.url,
        sealed.case,
        seq,
        resigned(sealed.entry(sealed.case, seq), daniel, kid=daniel.kid),
    )

    failure = remote.failure()

    assert named(failure) == where
    assert failure is not None and "not bound" in failure.problem


def test_a_rule_broken_behind_the_ledgers_back_is_named_through_the_api(remote: Remote) -> None:
    sealed = remote.sealed
    case = append_an_agreement_nobody_heard_the_child_for(sealed, seal=False)
    wait_until_signed(sealed, DIRECTORY_SIZE + CASE_SIZE + 5)  # by the server's sealer

    failure = remote.failure()

    assert named(failure) == sealed.where(case, 5)
    assert failure is not None and "R6" in failure.problem


def test_a_wrong_ledger_key_fails_at_the_checkpoint(
    remote: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.pub"
    other.write_text(keys.public_key_b64(keys.generate().public_key()))

    code, out, err = remote.cli(capsys, "--token", remote.token, "--ledger-key", str(other))

    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        "accord: verification_failed: checkpoint: the checkpoint carries no signature by the"
        " ledger key"
    )


def test_a_trusted_checkpoint_of_another_history_fails_through_the_api(
    sealed: Sealed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "checkpoint.txt"
    saved.write_text(sealed.seal().note)
    rewrite_history(sealed, drop=3)

    with serving(sealed) as remote:
        assert remote.failure(trusted=sealed.early.note) is None  # its history was kept
        code, out, err = remote.cli(capsys, "--token", remote.token, "--trusted", str(saved))

    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith(
        f"accord: verification_failed: position {DIRECTORY_SIZE + CASE_SIZE - 1}, stream "
    )
    assert "history was rewritten" in err


def test_a_trusted_checkpoint_the_log_extends_is_named_in_the_summary(
    remote: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "checkpoint.txt"
    saved.write_text(remote.sealed.early.note)

    code, out, err = remote.cli(capsys, "--token", remote.token, "--trusted", str(saved))

    assert code == 0, err
    assert out.endswith(f"it extends the trusted checkpoint of size {DIRECTORY_SIZE}")


@pytest.mark.parametrize("token", ["missing", "revoked", "member", "organisation", "unknown"])
def test_a_token_that_cannot_read_every_entry_gives_one_clear_line(
    remote: Remote,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    token: str,
) -> None:
    monkeypatch.delenv("ACCORD_TOKEN", raising=False)
    if token == "missing":
        given: list[str] = []
    elif token == "revoked":
        revoked = remote.issue(Scope.SERVICE)
        tokens.revoke(remote.server, revoked.removeprefix("accord_").split("_")[0])
        given = ["--token", revoked]
    elif token == "member":
        given = ["--token", remote.issue(Scope.MEMBER)]
    elif token == "organisation":
        given = ["--token", remote.issue(Scope.SERVICE, remote.sealed.world.organisation(SCHOOL))]
    else:
        given = ["--token", "accord_" + "0" * 32 + "_secret"]

    code, out, err = remote.cli(capsys, *given)

    expected = {
        "missing": "unauthorized",
        "revoked": "unauthorized",
        "unknown": "unauthorized",
        "member": "forbidden",
        "organisation": "forbidden",
    }[token]
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[-1].startswith(f"accord: {expected}: "), err
    assert "Traceback" not in err
    assert all(secret not in err for secret in given[1:])


def test_verifying_through_the_api_without_a_home_needs_the_ledger_key(
    remote: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = tmp_path / "no-home"
    args = ["--home", str(nowhere), "verify", "--url", remote.url, "--token", remote.token]

    code = main(args)
    out, err = capsys.readouterr()

    assert (code, out) == (1, "")
    assert err.startswith("accord: ledger_key_required: ")

    public = nowhere.parent / "ledger.pub"
    public.write_text(remote.sealed.home.config.ledger_key)
    assert main([*args, "--ledger-key", str(public), "--workers", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"verified {DIRECTORY_SIZE + CASE_SIZE} entries")


def test_an_unreachable_server_gives_one_clear_line(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    command = CLI(sealed.home.path, sealed.url, capsys)

    code, out, err = command("verify", "--url", f"http://127.0.0.1:{port}", "--token", "t")

    assert (code, out) == (1, "")
    assert err.startswith(f"accord: unreachable: cannot read http://127.0.0.1:{port}: ")
