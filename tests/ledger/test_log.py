"""The sealer: every entry gets its dense position and its leaf, the stored tree gives
exact proofs, whether it was sealed live batch by batch or caught up in bulk (the hash index
dropped and made again), after a failed write and after the sealing process was killed."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import checkpoint as checkpoints
from ledger import keys, merkle
from ledger import sealer as sealer_module
from ledger.ledger import Ledger
from ledger.log import Log
from ledger.sealer import Sealer
from ledger.tables import Cursor
from tests.conftest import World

LEDGER_KEY = keys.generate()


def add_entries(world: World, people: int) -> None:
    """Two directory entries (register, bind) per person."""
    start = len(world.people)
    for n in range(start, start + people):
        world.person(f"person {n}")


def check_log(ledger: Ledger, reader: Log) -> int:
    """Everything sealed is exact: positions dense in ledger order with each entry's hash and
    leaf, every signed checkpoint the root of the entries up to its size and consistent with
    the next, every inclusion proof verifying, every entry found by its hash. Returns the
    size of the latest checkpoint."""
    logged = list(ledger.read_log())
    sealed = reader.positions(-1, len(logged) + 1)
    assert [p for p, *_ in sealed] == list(range(len(sealed)))
    assert [(n, s, q, h) for _, n, s, q, h in sealed] == [
        (e.notification_id, str(e.stream), e.entry.seq, e.entry.hash) for e in logged
    ][: len(sealed)]
    reference, roots = merkle.Frontier(), [merkle.EMPTY_ROOT]
    for entry in logged[: len(sealed)]:
        reference.append(merkle.leaf_hash(entry.entry.data))
        roots.append(reference.root())
    latest = reader.checkpoint()
    assert latest is not None
    sizes = [s for s in range(len(sealed) + 1) if reader.checkpoint_at(s) is not None]
    assert sizes[-1] == latest.size
    for size in sizes:
        signed = reader.checkpoint_at(size)
        assert signed is not None and signed.root == roots[size] == reader.root(size)
        checkpoints.parse(signed.note, ledger.origin, LEDGER_KEY.public_key())
    for old, new in itertools.pairwise(sizes):
        path = reader.consistency(old, new)
        assert merkle.verify_consistency(old, new, roots[old], roots[new], path)
    for position, entry in enumerate(logged[: latest.size]):
        leaf = merkle.leaf_hash(entry.entry.data)
        assert reader.leaf(position) == leaf
        path = reader.inclusion(position, latest.size)
        assert merkle.verify_inclusion(leaf, position, latest.size, path, latest.root)
        assert reader.position(entry.entry.hash) == position
    return latest.size


def hash_index(reader: Log) -> bool:
    """Whether the index of entry hashes is there."""
    if reader.tables.postgres:
        sql = (
            "SELECT 1 FROM pg_indexes"
            " WHERE schemaname = current_schema() AND indexname = 'log_entries_hash_prefix'"
        )
    else:
        sql = "SELECT 1 FROM sqlite_master WHERE name = 'log_entries_hash_prefix'"
    return bool(reader.tables.query(sql))


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A catch-up of a few dozen entries takes many batches, written in the writer thread."""
    monkeypatch.setattr(sealer_module, "_CATCH_UP_BATCH", 7)


@pytest.fixture
def sealer(world: World) -> Iterator[Sealer]:
    sealing = Sealer(world.ledger, LEDGER_KEY, batch_size=3, interval=0.0)
    try:
        yield sealing
    finally:
        sealing.log.close()


def test_sealed_live_batch_by_batch_and_then_caught_up_in_bulk_the_log_is_exact(
    world: World, sealer: Sealer, small_batches: None
) -> None:
    add_entries(world, 4)
    while sealer.run_once():  # live: three entries a batch, a checkpoint after each
        pass
    live = check_log(world.ledger, sealer.log)
    add_entries(world, 30)  # a backlog longer than the log: the hash index is dropped

    sealed = sealer.catch_up()

    assert sealed == 60
    assert check_log(world.ledger, sealer.log) == live + 60
    assert hash_index(sealer.log)


def test_a_catch_up_shorter_than_the_log_keeps_the_hash_index_and_is_exact(
    world: World, sealer: Sealer, small_batches: None
) -> None:
    add_entries(world, 20)
    sealer.catch_up()
    add_entries(world, 8)
    dropped: list[str] = []
    sealer._drop_hash_index = lambda: dropped.append("dropped")  # type: ignore[method-assign]

    assert sealer.catch_up() == 16

    assert dropped == []
    assert check_log(world.ledger, sealer.log) == world.ledger.size()


def test_listeners_hear_of_every_batch_of_a_catch_up_in_order(
    world: World, sealer: Sealer, small_batches: None
) -> None:
    add_entries(world, 20)
    heard: list[int] = []
    sealer.on_commit(heard.append)

    sealer.catch_up()

    size = world.ledger.size()
    assert heard == sorted(heard) and heard[-1] == size
    assert len(heard) == -(-size // 7)


def test_a_write_failing_mid_catch_up_leaves_whole_batches_and_the_next_catch_up_completes(
    world: World, sealer: Sealer, small_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_entries(world, 30)
    writes = 0
    write = Sealer._write

    def failing(self: Sealer, cursor: Cursor, batch: sealer_module._Batch) -> None:
        nonlocal writes
        writes += 1
        write(self, cursor, batch)
        if writes == 4:
            raise OSError("disk full")

    monkeypatch.setattr(Sealer, "_write", failing)
    with pytest.raises(OSError, match="disk full"):
        sealer.catch_up()
    assert sealer.log.size() == 3 * 7  # the fourth batch rolled back, the rest never written
    assert hash_index(sealer.log)
    sealer.sign_pending(force=True)
    assert check_log(world.ledger, sealer.log) == 3 * 7

    monkeypatch.setattr(Sealer, "_write", write)
    assert sealer.catch_up() == world.ledger.size() - 3 * 7
    assert check_log(world.ledger, sealer.log) == world.ledger.size()


SEAL_SLOWLY = """
import sys, time
from pathlib import Path
from ledger import keys, sealer
from ledger.ledger import Ledger
from ledger.sealer import Sealer
store, origin, authority, ledger_key = sys.argv[1:5]
ledger = Ledger(store, origin, keys.public_key_from_b64(authority))
sealer._CATCH_UP_BATCH = 5
write = Sealer._write
def slowly(self, cursor, batch):
    write(self, cursor, batch)
    time.sleep(0.05)  # still in the batch's transaction
Sealer._write = slowly
Sealer(ledger, keys.load_private_key(Path(ledger_key)), batch_size=1).catch_up()
print("finished", flush=True)
"""


def test_a_sealer_killed_mid_catch_up_resumes_and_the_log_is_exact(
    world: World, tmp_path: Path
) -> None:
    add_entries(world, 60)
    total = world.ledger.size()
    key_file = tmp_path / "ledger.pem"
    keys.save_private_key(LEDGER_KEY, key_file)
    reader = Log(world.ledger)  # its tables and index made before the sealer drops the index
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SEAL_SLOWLY,
            world.ledger.store.url,
            world.ledger.origin,
            keys.public_key_b64(world.authority_key),
            str(key_file),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while reader.size() < total // 3:
            assert child.poll() is None, "the sealing process ended by itself"
            assert time.monotonic() < deadline, "the sealing process made no progress"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        killed_at = reader.size()
        assert total // 3 <= killed_at < total
        assert killed_at % 5 == 0  # whole batches only
        assert not hash_index(reader)  # killed while it was dropped

        sealer = Sealer(world.ledger, LEDGER_KEY)  # a new process would open its log so
        assert hash_index(sealer.log)
        assert sealer.catch_up() == total - killed_at
        assert check_log(world.ledger, sealer.log) == total
        sealer.log.close()
    finally:
        if child.poll() is None:
            child.kill()
        reader.close()
