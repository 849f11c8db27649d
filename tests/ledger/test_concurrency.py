"""Two OS processes appending to one stream at once: no fork, no loss, nothing stored twice."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Barrier

from cryptography.hazmat.primitives import serialization

from ledger import keys
from ledger.author import Author
from ledger.ledger import Ledger
from tests.conftest import ORIGIN, World

PER_PROCESS = 500


def _append(
    start: Barrier,
    store_url: str,
    authority_public: bytes,
    person: str,
    key_pem: bytes,
    stream: str,
    tag: str,
) -> None:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, keys.Ed25519PrivateKey)
    authority = keys.Ed25519PublicKey.from_public_bytes(authority_public)
    author = Author(ORIGIN, person, key)
    with Ledger(store_url, ORIGIN, authority) as ledger:
        start.wait(timeout=60)
        for n in range(PER_PROCESS):
            ledger.submit(author.submission(stream, "note.made", {"writer": tag, "n": n}))
            # A writer that never pauses keeps SQLite's lock to itself; this makes them interleave.
            time.sleep(random.uniform(0, 0.001))


def _replay(
    start: Barrier, store_url: str, authority_public: bytes, submissions: list[bytes]
) -> None:
    authority = keys.Ed25519PublicKey.from_public_bytes(authority_public)
    with Ledger(store_url, ORIGIN, authority) as ledger:
        start.wait(timeout=60)
        for submission in submissions:
            ledger.submit(submission)


def _run(targets: list[tuple[Callable[..., None], tuple[object, ...]]]) -> None:
    """Run each target in its own process, all released at the same moment."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(targets))
    processes = [context.Process(target=target, args=(start, *args)) for target, args in targets]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0] * len(processes)


def _pem(key: keys.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_two_processes_appending_to_one_stream_make_one_unbroken_chain(
    world: World, store_url: str
) -> None:
    grace = world.person("Grace")
    stream = str(uuid.uuid4())
    public = keys.raw_public_key(world.authority_key)
    common = (store_url, public, grace.person, _pem(grace.key), stream)

    _run([(_append, (*common, "a")), (_append, (*common, "b"))])

    ledger = world.reopen()
    entries = list(ledger.entries(uuid.UUID(stream)))
    assert [entry.seq for entry in entries] == list(range(1, 2 * PER_PROCESS + 1))
    written = {(e.statement.body["writer"], e.statement.body["n"]) for e in entries}
    assert written == {(tag, n) for tag in "ab" for n in range(PER_PROCESS)}
    writers = [entry.statement.body["writer"] for entry in entries]
    switches = sum(1 for before, after in itertools.pairwise(writers) if before != after)
    assert switches > 2, "the two writers did not interleave, so nothing was contended"
    assert ledger.check_stream(uuid.UUID(stream)) == 2 * PER_PROCESS


def test_the_same_statements_sent_by_two_processes_are_stored_once(
    world: World, store_url: str
) -> None:
    grace = world.person("Grace")
    stream = str(uuid.uuid4())
    submissions = [grace.submission(stream, "note.made", {"n": n}) for n in range(100)]
    public = keys.raw_public_key(world.authority_key)

    _run([(_replay, (store_url, public, submissions)) for _ in range(2)])

    ledger = world.reopen()
    assert ledger.check_stream(uuid.UUID(stream)) == 100
    assert sorted(e.statement.body["n"] for e in ledger.entries(uuid.UUID(stream))) == list(
        range(100)
    )
