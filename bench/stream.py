"""Following the ledger over HTTP, with `accord serve` in its own process, on SQLite and
PostgreSQL.

Rows of bench/results/stream.json (ratio >= target passes):

- stream_catchup_rate: events per second paging `GET /v1/events` (the server's largest batch,
  10,000) through a 200,000-entry ledger with an unscoped service token. Reference: the raw
  notification-log read rate (`recorder.select_notifications`, pages of 1,000) of the same store
  in the same run. The target is absolute (50,000 events/s), expressed as a ratio to the
  reference, as in bench/projections.py.
- stream_live_p50, stream_live_p99: milliseconds from an entry's append (its `recorded_at`, the
  ledger's clock read just before the commit, so a little early) to its receipt by each of
  SUBSCRIBERS concurrent SSE subscribers (aiohttp, all in this process) while statements are
  appended one at a time at a steady pace. Reference: the 100 ms budget; ratio = budget / value
  (1.0 or more is within budget); target 1.0 for p99.

The 200,000 entries are built by `bench.projections.build` and sealed in an `accord` home (the
live rows use a small home of their own, where this script can register an author).
`--profile` runs the server under cProfile, in every thread, and prints where its time went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: bench/ must not shadow the `domain` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aiohttp
import msgspec
import orjson
from rich.console import Console

from api.home import AUTHORITY_KEY, CONFIG, Home
from api.tokens import Scope, issue
from bench.common import Result, free_port, report, store_urls, wait_until_healthy
from bench.projections import build
from ledger import keys
from ledger.author import Author
from ledger.sealer import Sealer
from ledger.stream import ENTRY_TOPIC
from projections.database import Database
from projections.follower import Follower

ORIGIN = "bench.example/accord"  # the origin `build` signs for
SIZE = 200_000
ROUNDS = 3
PAGE = 10_000  # the server's largest catch-up batch
RAW_PAGE = 1_000
TARGET_RATE = 50_000.0
SUBSCRIBERS = 200
LIVE_EVENTS = 300
LIVE_WARMUP = 20
LIVE_INTERVAL = 0.05  # seconds between appends: 20 a second, each delivered on its own
BUDGET_MS = 100.0
console = Console(width=120)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.stream", description=__doc__)
    parser.add_argument("--profile", action="store_true", help="profile the server")
    parser.add_argument("--store", choices=["sqlite", "postgres"], help="only this store")
    parser.add_argument("--serve-profiled", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_profiled:
        out, home, port = args.serve_profiled
        serve_profiled(Path(out), Path(home), int(port))
        return
    results: list[Result] = []
    with store_urls() as kinds, tempfile.TemporaryDirectory() as scratch:
        for store, fresh in kinds:
            if args.store not in (None, store):
                continue
            directory = Path(scratch) / store
            results.append(catch_up_row(store, fresh("stream"), directory, args.profile))
            results += live_rows(store, fresh("live"), directory, args.profile)
    report("stream", results)


# -- catch-up -------------------------------------------------------------------------------------


def catch_up_row(store: str, url: str, directory: Path, profile: bool) -> Result:
    started = time.perf_counter()
    home = sealed_home(directory / "catch-up", url)
    console.print(
        f"[dim]{store}: built, sealed and projected {SIZE:,} entries in {_since(started)}"
    )
    with home.open_ledger() as record:
        service = home.authority(record).register("Catch-up Service", "service")
        token = issue(record, service, Scope.SERVICE)
        total = record.size()
    with serving(home.path, directory / "catch-up.prof" if profile else None) as server:
        settle(server)
        rates, raws = [], []
        for _ in range(ROUNDS):
            raws.append(raw_read_rate(home))
            rates.append(asyncio.run(catch_up_rate(server, token, total)))
    if profile:
        print_profile(directory / "catch-up.prof", f"catch-up, {store}")
    rate, raw = statistics.median(rates), statistics.median(raws)
    return Result(
        "stream_catchup_rate", store, rate, "events/s", raw, rate / raw, TARGET_RATE / raw
    )


def sealed_home(path: Path, url: str) -> Home:
    """A home serving a `build` ledger of SIZE entries, sealed with the home's ledger key.

    `build` opens the directory with an authority key of its own, so `Home.create` finds the
    directory open and writes nothing; the home must then hold and name that authority key (it
    signed the directory) for the ledger it serves to be consistent."""
    authority_key = keys.generate()
    authority = build(url, SIZE, authority_key)
    created = Home.create(path, ORIGIN, url)
    config = msgspec.structs.replace(created.config, authority_key=authority)
    (path / CONFIG).write_bytes(msgspec.json.format(msgspec.json.encode(config)) + b"\n")
    for made in (path / AUTHORITY_KEY, path / f"{AUTHORITY_KEY}.pub"):
        made.unlink()
    keys.save_private_key(authority_key, path / AUTHORITY_KEY)
    home = Home.load(path)
    with home.open_ledger() as record:
        sealer = Sealer(record, home.ledger_key())
        try:
            sealer.catch_up()
        finally:
            sealer.log.close()
        # Built here rather than by the server, so a profile of the server shows only serving.
        database = Database(record.store)
        try:
            Follower(record, database).rebuild()
        finally:
            database.close()
    return home


def raw_read_rate(home: Home) -> float:
    """Entries per second read straight from the notification log."""
    with home.open_ledger() as record:
        started, count, start = time.perf_counter(), 0, 1
        while page := record.recorder.select_notifications(
            start=start, limit=RAW_PAGE, topics=[ENTRY_TOPIC]
        ):
            count += len(page)
            start = page[-1].id + 1
        return count / (time.perf_counter() - started)


async def catch_up_rate(url: str, token: str, total: int) -> float:
    """Events per second of one subscriber paging from the start to the end of the log."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        after, count = -1, 0
        started = time.perf_counter()
        while True:
            params = {"after": str(after), "limit": str(PAGE)}
            async with session.get(f"{url}/v1/events", params=params, headers=headers) as response:
                assert response.status == 200, await response.text()
                body = await response.read()
                following = int(response.headers["Accord-Next-After"])
            if following == after:
                break
            # Unscoped positions are dense: the header counts the batch without parsing it.
            count += following - after
            after = following
        elapsed = time.perf_counter() - started
    assert count == total, f"caught up {count} events of {total}"
    assert orjson.loads(body) == []
    return count / elapsed


# -- live delivery --------------------------------------------------------------------------------


@dataclass
class Subscriber:
    """One SSE connection: when each event's data line arrived, and the line."""

    received: list[tuple[float, bytes]] = field(default_factory=list)


def live_rows(store: str, url: str, directory: Path, profile: bool) -> list[Result]:
    home = Home.create(directory / "live", ORIGIN, url)
    with home.open_ledger() as record:
        authority = home.authority(record)
        key = keys.generate()
        lead = authority.register("Live Lead", "professional", profession="paediatrician")
        authority.bind(lead, key.public_key())
        child = authority.register("Live Child", "child", born="2016-03-14")
        token = issue(record, authority.register("Live Service", "service"), Scope.SERVICE)
    author = Author(ORIGIN, lead, key)
    statements = [
        author.submission(
            str(uuid.uuid4()), "case.opened", {"child": child, "title": f"Live {n}", "lead": lead}
        )
        for n in range(LIVE_WARMUP + LIVE_EVENTS)
    ]
    with serving(home.path, directory / "live.prof" if profile else None) as server:
        settle(server)
        by_event = asyncio.run(deliver(server, token, statements))
    if profile:
        print_profile(directory / "live.prof", f"live delivery, {store}")
    latencies = [latency for receipts in by_event.values() for latency in receipts]
    expected = SUBSCRIBERS * LIVE_EVENTS
    assert len(latencies) == expected, f"{len(latencies)} receipts, not {expected}"
    assert all(len(receipts) == SUBSCRIBERS for receipts in by_event.values())
    p50, p99 = statistics.median(latencies), _percentile(latencies, 99)
    # Where a receipt's latency comes from: reaching the first subscriber (append, seal, the
    # feed's read) and then going round the others (the fan-out).
    first = [min(receipts) for receipts in by_event.values()]
    fan_out = [max(receipts) - min(receipts) for receipts in by_event.values()]
    console.print(
        f"[dim]{store}: {expected:,} receipts; all: p90 {_percentile(latencies, 90):.1f},"
        f" max {max(latencies):.1f} ms; first subscriber: p50 {statistics.median(first):.1f},"
        f" p99 {_percentile(first, 99):.1f} ms; fan-out to the last: p50"
        f" {statistics.median(fan_out):.1f}, p99 {_percentile(fan_out, 99):.1f} ms"
    )
    return [
        Result("stream_live_p50", store, p50, "ms", BUDGET_MS, BUDGET_MS / p50, 0.0),
        Result("stream_live_p99", store, p99, "ms", BUDGET_MS, BUDGET_MS / p99, 1.0),
    ]


async def deliver(url: str, token: str, statements: list[bytes]) -> dict[int, list[float]]:
    """Milliseconds from append to receipt of each measured event (by position), one figure
    per subscriber."""
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        subscribers = [Subscriber() for _ in range(SUBSCRIBERS)]
        connected = [asyncio.Event() for _ in subscribers]
        expected = len(statements)

        async def listen(subscriber: Subscriber, ready: asyncio.Event) -> None:
            async with session.get(f"{url}/v1/events/live", headers=headers) as response:
                assert response.status == 200, await response.text()
                ready.set()
                async for line in response.content:
                    if line.startswith(b"data:"):
                        subscriber.received.append((time.time(), line))
                        if len(subscriber.received) == expected:
                            return

        listeners = [
            asyncio.create_task(listen(s, ready))
            for s, ready in zip(subscribers, connected, strict=True)
        ]
        await asyncio.gather(*(ready.wait() for ready in connected))
        await append_paced(session, url, statements)
        async with asyncio.timeout(60):
            await asyncio.gather(*listeners)
    by_event: dict[int, list[float]] = {}
    for subscriber in subscribers:
        for received_at, line in subscriber.received[LIVE_WARMUP:]:
            event = orjson.loads(line[5:])
            appended = datetime.fromisoformat(event["time"]).timestamp()
            by_event.setdefault(int(event["sequence"]), []).append((received_at - appended) * 1000)
    return by_event


async def append_paced(session: aiohttp.ClientSession, url: str, statements: list[bytes]) -> None:
    """POST the statements one at a time, one every LIVE_INTERVAL seconds."""
    headers = {"Content-Type": "application/json"}
    started = time.monotonic()
    for n, data in enumerate(statements):
        delay = started + n * LIVE_INTERVAL - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with session.post(f"{url}/v1/statements", data=data, headers=headers) as response:
            assert response.status == 201, await response.text()


# -- the server -----------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(home: Path, profile: Path | None) -> Iterator[str]:
    """`accord --home HOME serve` in a subprocess on a free port; yields its URL."""
    port = free_port()
    if profile is None:
        command = [sys.executable, "-m", "api.cli", "--home", str(home), "serve"]
        command += ["--port", str(port)]
    else:
        command = [sys.executable, "-m", "bench.stream", "--serve-profiled"]
        command += [str(profile), str(home), str(port)]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as errors:
        # Access lines go to stdout, one per request: discarded, never left to fill a pipe.
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            wait_until_healthy(url, server)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(120)
            except subprocess.TimeoutExpired:
                server.kill()
                code = server.wait()
            if code != 0:
                errors.seek(0)
                console.print(errors.read().decode(errors="replace")[-4000:])
                raise RuntimeError(f"the server exited with {code}")


def settle(url: str) -> None:
    """Wait until the projections have applied every entry, so that no background work is
    measured with the stream (a fresh home's projections start from nothing)."""
    deadline = time.monotonic() + 600
    while _get_json(f"{url}/healthz")["projections_lag"] > 0:
        assert time.monotonic() < deadline, "the projections did not catch up"
        time.sleep(0.5)


def serve_profiled(out: Path, home: Path, port: int) -> None:
    """Run `accord serve` with a profiler in every thread; dump the merged stats on exit."""
    from api.cli import main as accord

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_profile(*_: Any) -> None:
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    threading.setprofile(start_profile)
    main_profile = cProfile.Profile()
    profiles.append(main_profile)
    main_profile.enable()
    try:
        accord(["--home", str(home), "serve", "--port", str(port)])
    finally:
        main_profile.disable()
        with lock:
            stats = pstats.Stats(*profiles)
        stats.dump_stats(out)


def print_profile(path: Path, what: str) -> None:
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        console.rule(f"server profile ({what}), by {order}")
        stats.sort_stats(order).print_stats(30)


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        value: dict[str, Any] = orjson.loads(response.read())
        return value


def _percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100)[percent - 1]


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.1f} s"


if __name__ == "__main__":
    main()
