"""Whole-ledger verification, Merkle sealing and proof generation, on SQLite and PostgreSQL.

verify_rate: entries/s of `accord verify` (`api.verify.verify_ledger` on every core: every
signature, chain, position, the tree and the rules) over a 200,000-entry ledger; reference the
number of cores times the single-core Ed25519 verify rate of `cryptography` (a fixed 300-byte
message) measured around it in the same run; target 0.85. Verification checks signatures with
libsodium (`keys.verify_bytes`), which is faster than `cryptography`: verify_rate_libsodium, for
information, sets the same rate against the cores times libsodium's own single-core rate,
measured alongside (what is left to gain outside the signatures). verify_rate_cpu_bound: the
same comparison made from CPU time rather than wall time (cores divided by the CPU spent per
entry in every process, against cores divided by the CPU of one `cryptography` verify): what an
otherwise idle machine would allow, so other load cannot hide a regression or excuse one; the
database server's CPU is not counted (verification runs in a process of its own, whose CPU and
its workers' this one reads once it has ended). store_pass_rate: `ledger.verify.verify_store`
without the rules against the same reference, for information; store_pass_time: its ms,
reference the whole verification's ms (the rules are replayed in the same pass, so the
difference is what they add).
seal_rate: leaves/s of `Sealer.catch_up` over the same ledger (positions, tree nodes and
checkpoints written), reference the in-memory `Frontier.append(leaf_hash(...))` rate; the target
ratio encodes the absolute 100,000 leaves/s. inclusion_* and consistency_*: value the mean (or
p99) µs of `Log.inclusion` / `Log.consistency` in a tree of 1,000 leaves, reference the same in
a tree of 1,000,000 leaves, taken in turns. A proof reads O(log n) stored hashes, each through
an index of depth O(log n): the ratio stays >= 0.25 ((log2 1,000 / log2 1,000,000) squared),
where an O(sqrt n) proof would bring it to 0.03 and an O(n) one near 0.001. (The hashes read
alone, 20 against 35, give 0.57; the time also pays for the index.) The details table adds CPU
per entry by process (this one, and the workers together) and the stored hashes each proof reads.
PostgreSQL verifies and seals a 50,000-entry ledger so that the whole run stays near ten
minutes.

`--store sqlite|postgres` measures one store only; `--only verify|seal|proofs` one part only
(the ledger is still built and sealed for verification).
"""

from __future__ import annotations

import argparse
import multiprocessing.forkserver as forkserver
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a file: bench/ must not shadow the `domain` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from rich.console import Console
from rich.table import Table

from api.verify import verify_ledger
from bench.common import Result, rate, report, store_urls
from bench.projections import ORIGIN, build
from domain.record import DecisionRecord
from ledger import checkpoint, keys, merkle
from ledger.keys import Ed25519PrivateKey, Ed25519PublicKey
from ledger.ledger import Ledger
from ledger.log import ENTRY_COLUMNS, NODE_COLUMNS, Log, stored_keys
from ledger.sealer import Sealer, insert, stored_nodes
from ledger.stream import ENTRY_TOPIC
from ledger.verify import verify_store

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"sqlite": 200_000, "postgres": 50_000}
TARGET_VERIFY = 0.85
TARGET_SEAL = 100_000  # leaves/s
ED25519_COUNT = 15_000
MESSAGE = bytes(range(256)) + bytes(44)  # 300 bytes
TREES = (1_000, 1_000_000)
PROOFS = 1_000
WARM_UP = 20
O_LOG_N = 0.25  # (log2(1,000) / log2(1,000,000)) ** 2: O(log n) reads through an O(log n) index
KINDS = ("inclusion", "consistency")

PARTS = ("verify", "seal", "proofs")

Details = list[tuple[str, str, str]]


@dataclass(frozen=True)
class Run:
    """One timed run: how many items it handled, wall seconds, and CPU seconds spent in this
    process and in the worker processes it started (and reaped)."""

    count: int
    seconds: float
    main_cpu: float
    workers_cpu: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def cpu_us(self) -> float:
        """CPU µs per item, every process together."""
        return (self.main_cpu + self.workers_cpu) / self.count * 1e6

    def split_us(self) -> str:
        main, workers = (cpu / self.count * 1e6 for cpu in (self.main_cpu, self.workers_cpu))
        return f"main {main:.0f} + workers {workers:.0f} = {main + workers:.0f} µs"


def timed(run: Callable[[], int]) -> Run:
    """Run `run` (which returns how many items it handled) and account for its time."""
    main, workers = _cpu()
    started = time.perf_counter()
    count = run()
    seconds = time.perf_counter() - started
    main_after, workers_after = _cpu()
    return Run(count, seconds, main_after - main, workers_after - workers)


def single_core(check: Callable[[Ed25519PublicKey, bytes, bytes], object]) -> Run:
    """`check(public, signature, message)` on one fixed 300-byte message and key, on one core."""
    key = keys.generate()
    public, signature = key.public_key(), key.sign(MESSAGE)

    def run() -> int:
        for _ in range(ED25519_COUNT):
            check(public, signature, MESSAGE)
        return ED25519_COUNT

    assert keys.verify_bytes(public, signature, MESSAGE)
    return timed(run)


def ed25519() -> Run:
    """`cryptography`'s verify (it raises if the signature is not valid)."""
    return single_core(lambda public, signature, message: public.verify(signature, message))


def libsodium() -> Run:
    """`keys.verify_bytes`: libsodium, what the ledger verifies with."""
    return single_core(keys.verify_bytes)


def seal(record: DecisionRecord, key: Ed25519PrivateKey) -> Run:
    """Seal the whole ledger from scratch, as `accord serve` would on a fresh home."""

    def run() -> int:
        sealer = Sealer(record, key)
        try:
            return sealer.catch_up()
        finally:
            sealer.log.close()

    return timed(run)


def frontier_rate(record: DecisionRecord, count: int) -> float:
    """Leaves per second of the in-memory tree alone, over the ledger's first entries' bytes."""
    sample = [
        bytes(n.state)
        for n in record.recorder.select_notifications(start=1, limit=2000, topics=[ENTRY_TOPIC])
    ]
    datas = [sample[n % len(sample)] for n in range(count)]

    def run() -> None:
        frontier = merkle.Frontier()
        for data in datas:
            frontier.append(merkle.leaf_hash(data))

    return rate(count, run)


def ledger_results(
    store: str, url: str, size: int, details: Details, parts: Sequence[str]
) -> list[Result]:
    """Build a signed ledger, seal it, verify it; the results of parts 1 and 2 (those asked)."""
    started = time.perf_counter()
    authority = build(url, size)
    details.append((store, f"build {size:,} entries", f"{time.perf_counter() - started:.1f} s"))
    ledger_key = keys.generate()
    results = []
    with DecisionRecord(url, ORIGIN, keys.public_key_from_b64(authority)) as record:
        in_memories = [frontier_rate(record, size)] if "seal" in parts else []
        sealed = seal(record, ledger_key)
        assert sealed.count == size, (sealed, size)
        if "seal" in parts:
            in_memories.append(frontier_rate(record, size))
            in_memory = statistics.median(in_memories)
            details += [
                (store, "Sealer.catch_up", f"{sealed.seconds:.2f} s, {sealed.rate:,.0f} leaves/s"),
                (store, "  CPU per leaf", f"{sealed.cpu_us():.1f} µs (this process only)"),
                (store, "Frontier in memory", f"{in_memory:,.0f} leaves/s ({_list(in_memories)})"),
            ]
            target = TARGET_SEAL / in_memory
            results.append(
                _measured("seal_rate", store, sealed.rate, "leaves/s", in_memory, target)
            )
        if "verify" in parts:
            public = ledger_key.public_key()
            results = verify_results(store, url, authority, public, details) + results
    return results


def verified(url: str, authority: str, key: Ed25519PublicKey, rules: bool) -> Run:
    """`verify_ledger` (`verify_store` without the rules) on every core, in a fresh process.

    Its workers are forked from it only while it has no other thread (on PostgreSQL the store's
    connection pool runs threads, so they start from a fork server, which is not this process's
    child): their CPU reaches this process once that process has ended, with its own. The
    process reports its own CPU during verification (main) and in all; the rest of what this
    process's children spent is the workers' (and, on PostgreSQL, the fork server's start).
    """
    before = _cpu()[1]
    command = [sys.executable, "-m", "bench.verify", "--measure", url, authority]
    command += [keys.public_key_b64(key), "rules" if rules else "store"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"verification failed:\n{done.stderr}")
    out = done.stdout.splitlines()[-1].split()
    count, seconds, main_cpu, own_cpu = int(out[0]), float(out[1]), float(out[2]), float(out[3])
    return Run(count, seconds, main_cpu, _cpu()[1] - before - own_cpu)


def measure(url: str, authority: str, key: str, rules: bool) -> None:
    """The other end of `verified`: print entries, seconds, CPU during verification and CPU
    in all of this process."""
    ledger_key, cores = keys.public_key_from_b64(key), os.cpu_count() or 1
    with DecisionRecord(url, ORIGIN, keys.public_key_from_b64(authority)) as record:
        cpu, started = time.process_time(), time.perf_counter()
        if rules:
            count = verify_ledger(record, ledger_key, workers=cores).store.entries
        else:
            count = verify_store(record, ledger_key, workers=cores).entries
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # A fork server (which reaped the workers) counts towards this process once it has been
    # reaped: stop it now (the hook multiprocessing's own tests use), not at exit.
    forkserver._forkserver._stop()  # type: ignore[attr-defined]
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(count, seconds, cpu, own.ru_utime + own.ru_stime)


def verify_results(
    store: str, url: str, authority: str, key: Ed25519PublicKey, details: Details
) -> list[Result]:
    """`verify_ledger`, and `verify_store` without the rules, against the Ed25519 rate."""
    cores = os.cpu_count() or 1
    singles, sodiums = [ed25519()], [libsodium()]
    alone = verified(url, authority, key, rules=False)
    singles.append(ed25519())
    sodiums.append(libsodium())
    whole = verified(url, authority, key, rules=True)
    singles.append(ed25519())
    sodiums.append(libsodium())
    assert alone.count == whole.count, (alone, whole)
    single = statistics.median(r.rate for r in singles)
    sodium = statistics.median(r.rate for r in sodiums)
    single_cpu_us = statistics.median(r.cpu_us() for r in singles)
    reference = cores * single
    # What the CPU spent per entry allows on otherwise idle cores (perfectly spread): the same
    # comparison as verify_rate, insensitive to other load on the machine.
    cpu_bound, cpu_ref = cores * 1e6 / whole.cpu_us(), cores * 1e6 / single_cpu_us
    details += [
        (
            store,
            "Ed25519 verify, one core",
            f"{single:,.0f}/s (samples {_list(r.rate for r in singles)}); {single_cpu_us:.0f} µs"
            " CPU each",
        ),
        (
            store,
            "  the same by libsodium (keys.verify_bytes)",
            f"{sodium:,.0f}/s (samples {_list(r.rate for r in sodiums)}); "
            f"{statistics.median(r.cpu_us() for r in sodiums):.0f} µs CPU each",
        ),
        (store, "cores (verify workers)", str(cores)),
        (store, "verify_ledger", f"{whole.seconds:.2f} s, {whole.rate:,.0f} entries/s"),
        (store, "  CPU per entry", whole.split_us()),
        (store, "verify_store (no rules)", f"{alone.seconds:.2f} s, {alone.rate:,.0f} entries/s"),
        (store, "  CPU per entry", alone.split_us()),
        (
            store,
            "rules CPU per entry",
            f"{whole.cpu_us() - alone.cpu_us():.0f} µs (verify_ledger minus verify_store)",
        ),
    ]
    whole_ms = whole.seconds * 1000
    return [
        _measured("verify_rate", store, whole.rate, "entries/s", reference, TARGET_VERIFY),
        _measured("verify_rate_cpu_bound", store, cpu_bound, "entries/s", cpu_ref, TARGET_VERIFY),
        _measured("verify_rate_libsodium", store, whole.rate, "entries/s", cores * sodium, 0.0),
        _measured("store_pass_rate", store, alone.rate, "entries/s", reference, 0.0),
        _measured("store_pass_time", store, alone.seconds * 1000, "ms", whole_ms, 0.0),
    ]


class CountingLog(Log):
    """A log that counts the stored hashes its proofs read (a node of odd level is read as
    its two children)."""

    fetched = 0

    def fetch(self, keys: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
        wanted = list(keys)
        self.fetched += len(stored_keys(wanted))
        return super().fetch(wanted)


class Tree:
    """A log whose tree holds `leaves` synthetic leaves, stored and signed as the sealer would."""

    def __init__(self, url: str, leaves: int) -> None:
        self.leaves = leaves
        self.ledger = Ledger(url, ORIGIN, keys.generate().public_key())
        self.log = CountingLog(self.ledger)
        self.fetched: dict[str, list[int]] = {"inclusion": [], "consistency": []}
        frontier = merkle.Frontier()
        tables = self.log.tables
        for start in range(0, leaves, 100_000):
            positions = range(start, min(leaves, start + 100_000))
            hashes = [_leaf(n) for n in positions]
            entries = (positions, positions, ["tree"] * len(positions), positions, hashes, hashes)
            nodes = stored_nodes(frontier.extend(hashes))
            with tables.transaction() as cursor:
                insert(tables.postgres, "log_entries", ENTRY_COLUMNS, entries)(cursor)
                insert(tables.postgres, "log_nodes", NODE_COLUMNS, nodes)(cursor)
        self.root = frontier.root()
        signed = checkpoint.sign(ORIGIN, leaves, self.root, keys.generate())
        with self.log.tables.transaction() as cursor:
            cursor.execute(
                "INSERT INTO log_checkpoints (size, root, note) VALUES (?, ?, ?)",
                (leaves, self.root, signed.note),
            )

    def close(self) -> None:
        self.log.close()
        self.ledger.close()

    def prove(self, kind: str, rng: random.Random) -> float:
        """µs of one proof of `kind` for a random leaf or old size, checked after timing."""
        other = rng.randrange(self.leaves) if kind == "inclusion" else rng.randrange(1, self.leaves)
        before = self.log.fetched
        started = time.perf_counter()
        if kind == "inclusion":
            path = self.log.inclusion(other, self.leaves)
        else:
            path = self.log.consistency(other, self.leaves)
        elapsed = time.perf_counter() - started
        self.fetched[kind].append(self.log.fetched - before)
        if kind == "inclusion":
            assert merkle.verify_inclusion(_leaf(other), other, self.leaves, path, self.root)
        else:
            old_root = self.log.root(other)
            assert merkle.verify_consistency(other, self.leaves, old_root, self.root, path)
        return elapsed * 1e6


def proof_results(store: str, fresh: Callable[[str], str], details: Details) -> list[Result]:
    """Proof times in a small and a large tree, taken in turns so that both see the same load;
    the results of part 3."""
    rng = random.Random(9162)
    started = time.perf_counter()
    small, large = (Tree(fresh(f"proofs{leaves}"), leaves) for leaves in TREES)
    details.append(
        (store, f"plant trees of {_list(TREES)} leaves", f"{time.perf_counter() - started:.1f} s")
    )
    times: dict[tuple[str, int], list[float]] = {}
    try:
        for n in range(WARM_UP + PROOFS):
            for tree in (small, large):
                for kind in KINDS:
                    elapsed = tree.prove(kind, rng)
                    if n >= WARM_UP:
                        times.setdefault((kind, tree.leaves), []).append(elapsed)
    finally:
        small.close()
        large.close()
    results = []
    for kind in KINDS:
        reads = [statistics.fmean(tree.fetched[kind]) for tree in (small, large)]
        details.append((store, f"{kind} proof: stored hashes read", _list(reads, ".1f")))
        for stat, measure in (("mean", statistics.fmean), ("p99", _p99)):
            at_small, at_large = (measure(times[kind, leaves]) for leaves in TREES)
            details.append(
                (
                    store,
                    f"{kind} proof {stat}",
                    f"{at_small / 1000:.3f} ms at {small.leaves:,} leaves,"
                    f" {at_large / 1000:.3f} ms at {large.leaves:,}",
                )
            )
            results.append(
                _measured(f"{kind}_{stat}_1k_vs_1M", store, at_small, "µs", at_large, O_LOG_N)
            )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__)
    parser.add_argument("--store", choices=tuple(SIZES), help="measure this store only")
    parser.add_argument("--only", choices=PARTS, help="measure this part only")
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)  # `verified`'s process
    args = parser.parse_args(argv)
    if args.measure:
        url, authority, key, what = args.measure
        measure(url, authority, key, what == "rules")
        return
    parts = (args.only,) if args.only else PARTS
    started, load = time.perf_counter(), os.getloadavg()[0]
    results: list[Result] = []
    details: Details = []
    with store_urls() as kinds:
        for store, fresh in kinds:
            if args.store not in (None, store):
                continue
            if "verify" in parts or "seal" in parts:
                results += ledger_results(store, fresh("verify"), SIZES[store], details, parts)
            if "proofs" in parts:
                results += proof_results(store, fresh, details)
    details.append(("", "whole benchmark", f"{time.perf_counter() - started:.0f} s"))
    # Other work on the machine depresses wall-clock rates (verify_rate the most, as it needs
    # every core at once): the load average says how much to trust them.
    details.append(("", "load average at start, at end", f"{load:.1f}, {os.getloadavg()[0]:.1f}"))
    table = Table(title="bench/verify.py: details")
    for column in ("store", "what", "measured"):
        table.add_column(column)
    for row in details:
        table.add_row(*row)
    Console(width=120).print(table)
    report("verify", results)


def _measured(
    name: str, store: str, value: float, unit: str, reference: float, target: float
) -> Result:
    """A result and its ratio to the reference."""
    return Result(name, store, value, unit, reference, value / reference, target)


def _cpu() -> tuple[float, float]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


def _leaf(n: int) -> bytes:
    return merkle.leaf_hash(n.to_bytes(8, "big"))


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _list(values: Iterable[float], spec: str = ",.0f") -> str:
    return ", ".join(f"{v:{spec}}" for v in values)


if __name__ == "__main__":
    main()
