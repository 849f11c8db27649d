"""The HTTP API under load: `accord serve` in its own process, concurrent keep-alive clients in
this one, over loopback, on SQLite and PostgreSQL.

Rows of bench/results/http.json, each the median of ROUNDS rounds on fresh ledgers and servers
(ratio >= target passes; an absolute target is expressed as a ratio to the row's reference, as
in bench/projections.py, and applies to SQLite):

- http_submit_rate: pre-signed `opinion.given` statements per second from CLIENTS concurrent
  clients, each answered 201 (a write answers once the projections include it). Reference: the
  in-process signed append rate, `DecisionRecord.submit` of the same kind of statements on a
  fresh store of the same kind, in the same run. Target 1,000 statements/s.
- http_submit_p50_at_max, http_submit_p99_at_max: latency (microseconds) under that load.
- http_submit_p50_at_half, http_submit_p99_at_half: latency of an open-loop load paced at half
  the measured rate, counted from each request's scheduled start, so a stall is not hidden by
  the requests it delays. Latency rows have the 50 ms budget as reference and ratio =
  reference / value (headroom: 1.0 or more is within budget); target 1.0 for p99 at half rate.
- http_plan_read_rate: `GET /v1/cases/{case}/plan` of the worked case per second with a member
  token, CLIENTS concurrent clients. Reference: the same clients reading a do-nothing aiohttp
  handler in another process (what this machine's loopback HTTP and load generator allow).
  Target 2,000 reads/s.
- http_reviewer_read_rate: the same reads with a reviewer token; each is recorded in the ledger
  before it is answered, so each is a write. Informative.

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams (`--client lean`,
the default): on a small machine aiohttp's client costs more CPU per request than the server
under test and caps what can be measured (`--client aiohttp` shows it). `--profile` runs the
server under cProfile, in every thread, and prints where its time went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

if not __package__:  # run as a file: bench/ must not shadow the `domain` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aiohttp
from rich.console import Console
from rich.table import Table

from api.home import Home
from api.tokens import Scope, issue
from bench.common import Result, compared, free_port, rate, report, store_urls, wait_until_healthy
from domain.record import DecisionRecord
from domain.worked_case import CAST, SCHOOL, birth_date, play
from ledger import keys
from ledger.author import Author
from ledger.authority import Authority
from projections.database import Database
from projections.queries import Projections

ORIGIN = "bench.example/accord"
CLIENTS = 32
CASES_PER_CLIENT = 4  # opinions spread over cases, so that no case grows unrealistically long
SUBMISSIONS = 15_000  # signed in advance; the full-load run stops when they or its time run out
SUBMIT_SECONDS = 8.0
WARMUP = 4  # requests per client before timing: connections open, server caches filled
PACED_SECONDS = 5.0
READ_SECONDS = 4.0
REFERENCE_SUBMISSIONS = {"sqlite": 2_000, "postgres": 1_000}
ROUNDS = 3  # every figure is the median of its rounds, each on a fresh ledger and server
IN_PROCESS_READS = 5_000
TARGET_SUBMIT_RATE = 1_000.0
TARGET_READ_RATE = 2_000.0
LATENCY_BUDGET_US = 50_000.0
JSON = {"Content-Type": "application/json"}
DO_NOTHING_SERVER = """
import sys
from aiohttp import web

async def nothing(request):
    return web.Response(body=b"{}", content_type="application/json")

app = web.Application()
app.router.add_get("/healthz", nothing)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
console = Console(width=120)


# -- the ledger the load runs against -------------------------------------------------------------


@dataclass
class OpenCase:
    """A case whose lead may give opinions on the proposal of its one open decision."""

    id: str
    lead: Author
    decision: str
    proposal: str
    proposal_hash: str

    def opinion(self, n: int) -> bytes:
        body = {
            "decision": self.decision,
            "proposal": self.proposal,
            "proposal_hash": self.proposal_hash,
            "stance": ("support", "concern", "unsure")[n % 3],
            "reasons": f"Thought number {n} about how this fits the week.",
        }
        return self.lead.submission(self.id, "opinion.given", body)


@dataclass
class Prepared:
    """What the load needs: cases to write to, the worked case to read, and tokens."""

    cases: list[OpenCase]
    read_case: str
    member_token: str
    reviewer_token: str
    signed: int = 0

    def opinions(self, count: int) -> list[list[bytes]]:
        """`count` fresh statements dealt to CLIENTS clients, each client on its own cases."""
        per_client: list[list[bytes]] = [[] for _ in range(CLIENTS)]
        for n in range(count):
            client = n % CLIENTS
            case = self.cases[client * CASES_PER_CLIENT + (n // CLIENTS) % CASES_PER_CLIENT]
            per_client[client].append(case.opinion(self.signed + n))
        self.signed += count
        return per_client


def prepare(record: DecisionRecord, authority: Authority) -> Prepared:
    """CLIENTS * CASES_PER_CLIENT open cases, each with a decision and a proposal, and the
    worked case to read; all through the real write path."""
    child = authority.register("Bench Child", "child", born="2016-03-14")
    cases = []
    for client in range(CLIENTS):
        key = keys.generate()
        person = authority.register(f"Lead {client}", "professional", profession="paediatrician")
        authority.bind(person, key.public_key())
        lead = Author(ORIGIN, person, key)
        for _ in range(CASES_PER_CLIENT):
            case, decision, proposal = (str(uuid.uuid4()) for _ in range(3))
            for kind, body in (
                ("case.opened", {"child": child, "title": "Bench case", "lead": person}),
                ("decision.opened", {"decision": decision, "question": "q", "required": [person]}),
                ("proposal.made", {"decision": decision, "proposal": proposal, "title": "p"}),
            ):
                receipt = record.submit(lead.submission(case, kind, body)).receipt
            cases.append(OpenCase(case, lead, decision, proposal, receipt.hash))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    authors = {}
    for p in CAST:
        key = keys.generate()
        born = birth_date(start) if p.kind == "child" else None
        person = authority.register(
            p.name, p.kind, profession=p.profession, organisation=p.organisation, born=born
        )
        authority.bind(person, key.public_key())
        authors[p.handle] = Author(ORIGIN, person, key)
    school = authority.register_organisation(SCHOOL)
    played = play(
        str(uuid.uuid4()), authors, lambda data: record.submit(data).receipt, start, school
    )
    reviewer = authority.register("Bench Reviewer", "professional")
    authority.appoint_reviewer(reviewer)
    return Prepared(
        cases,
        played.case,
        member_token=issue(record, authors["okafor"].person, Scope.MEMBER),
        reviewer_token=issue(record, reviewer, Scope.REVIEWER),
    )


# -- servers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(home: Path, profile: Path | None) -> Iterator[str]:
    """`accord --home HOME serve` in a subprocess on a free port; yields its URL."""
    port = free_port()
    if profile is None:
        command = [sys.executable, "-m", "api.cli", "--home", str(home)]
        command += ["serve", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "bench.http", "--serve-profiled"]
        command += [str(profile), str(home), str(port)]
    with _process(command, f"http://127.0.0.1:{port}") as url:
        yield url


@contextlib.contextmanager
def doing_nothing() -> Iterator[str]:
    """An aiohttp server whose only handler does nothing, in a subprocess."""
    port = free_port()
    command = [sys.executable, "-c", DO_NOTHING_SERVER, str(port)]
    with _process(command, f"http://127.0.0.1:{port}") as url:
        yield url


@contextlib.contextmanager
def _process(command: list[str], url: str) -> Iterator[str]:
    with tempfile.TemporaryFile() as errors:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            wait_until_healthy(url, server)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                code = server.wait()
            if code != 0:
                errors.seek(0)
                console.print(errors.read().decode(errors="replace")[-4000:])
                raise RuntimeError(f"{command[:3]} exited with {code}")


def serve_profiled(out: Path, home: Path, port: int) -> None:
    """Run `accord serve` with a CPU-time profiler in every thread (so time spent waiting for
    the disk, a lock or the GIL is not counted); dump the merged stats, and each thread's CPU
    seconds beside them, on exit."""
    from api.cli import main

    profiles: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()

    def start_profile(*_: Any) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append((threading.current_thread().name, profile))
        profile.enable()  # replaces this hook for the rest of the thread

    threading.setprofile(start_profile)
    main_profile = cProfile.Profile(time.thread_time)
    profiles.append(("event loop", main_profile))
    main_profile.enable()
    try:
        main(["--home", str(home), "serve", "--port", str(port)])
    finally:
        main_profile.disable()
        with lock:
            threads: dict[str, float] = {}
            for name, profile in profiles:
                profile.create_stats()
                total = sum(row[2] for row in profile.stats.values())
                kind = name.rstrip("0123456789_").rstrip("-")
                threads[kind] = threads.get(kind, 0.0) + total
            stats = pstats.Stats(*(profile for _, profile in profiles))
        stats.dump_stats(out)
        Path(f"{out}.threads.json").write_text(json.dumps(threads))


def print_profile(path: Path, store: str) -> None:
    threads = json.loads(Path(f"{path}.threads.json").read_text())
    console.rule(f"server CPU seconds by thread ({store})")
    for name, seconds in sorted(threads.items(), key=lambda item: -item[1]):
        console.print(f"{seconds:8.2f}  {name}")
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        console.rule(f"server CPU profile ({store}), by {order}")
        stats.sort_stats(order).print_stats(40)


def _settle(url: str) -> None:
    """Wait until the projections have applied everything and the sealer has sealed it (the
    checkpoint's size stays put for longer than the signing interval), so that reads are not
    measured against background work left over from the writes."""
    deadline = time.monotonic() + 120
    while _get_json(f"{url}/healthz")["projections_lag"] > 0:
        assert time.monotonic() < deadline, "the projections did not catch up"
        time.sleep(0.1)
    sizes = [-1]
    while sizes[-3:] != [sizes[-1]] * 3:
        assert time.monotonic() < deadline, "the sealer did not catch up"
        time.sleep(0.5)
        sizes.append(_get_json(f"{url}/v1/ledger")["size"])


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        value: dict[str, Any] = json.loads(response.read())
        return value


# -- clients --------------------------------------------------------------------------------------


class Connection(Protocol):
    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        """Send one request and read the whole answer; returns its status."""
        ...


Connect = Callable[[], Awaitable[Connection]]


class Lean:
    """One keep-alive HTTP/1.1 connection, one request at a time; answers need Content-Length
    (every answer of these endpoints has one)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Lean:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"no Content-Length in {head!r}")
        await self.reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        self.writer.close()


class Pooled:
    """Requests through a shared aiohttp session (keep-alive connection pool)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        async with self.session.request(method, self.url + path, data=body, headers=headers) as r:
            await r.read()
            return r.status


@contextlib.asynccontextmanager
async def clients(kind: str, url: str) -> AsyncIterator[Connect]:
    """A way to open client connections of this kind; they are closed at the end."""
    if kind == "aiohttp":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def pooled() -> Connection:
                return Pooled(session, url)

            yield pooled
        return
    opened: list[Lean] = []

    async def lean() -> Connection:
        connection = await Lean.open(url)
        opened.append(connection)
        return connection

    try:
        yield lean
    finally:
        for connection in opened:
            connection.close()


# -- load -----------------------------------------------------------------------------------------


@dataclass
class Load:
    """What one load run measured."""

    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    unexpected: dict[int, int] = field(default_factory=dict)  # status -> count

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, p: float) -> float:
        """The p-th percentile latency, in microseconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1e6

    def answered(self, status: int, expected: int) -> None:
        if status != expected:
            self.unexpected[status] = self.unexpected.get(status, 0) + 1

    def check(self, what: str) -> None:
        if self.unexpected:
            raise RuntimeError(f"{what}: unexpected statuses {self.unexpected}")


async def closed_loop(connect: Connect, per_client: list[list[bytes]], seconds: float) -> Load:
    """Each client posts its statements one after the other, all clients at once, until they
    have sent them all or `seconds` have passed."""
    load = Load()

    async def client(connection: Connection, items: list[bytes], until: float) -> None:
        for data in items:
            if time.perf_counter() >= until:
                return
            started = time.perf_counter()
            load.answered(await connection.request("POST", "/v1/statements", data, JSON), 201)
            load.latencies.append(time.perf_counter() - started)
            load.count += 1

    connections = [await connect() for _ in per_client]
    forever = time.perf_counter() + 3600
    pairs = list(zip(connections, per_client, strict=True))
    await asyncio.gather(*(client(c, items[:WARMUP], forever) for c, items in pairs))
    load.count, load.latencies = 0, []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(client(c, items[WARMUP:], until) for c, items in pairs))
    load.seconds = time.perf_counter() - started
    return load


async def paced(connect: Connect, statements: list[bytes], per_second: float) -> Load:
    """Open-loop load: request n starts at n / per_second whether or not earlier ones have been
    answered (on an idle connection, or a new one); its latency counts from that moment."""
    load = Load(count=len(statements))
    loop = asyncio.get_running_loop()
    idle = [await connect() for _ in range(CLIENTS)]

    async def one(data: bytes, scheduled: float) -> None:
        connection = idle.pop() if idle else await connect()
        load.answered(await connection.request("POST", "/v1/statements", data, JSON), 201)
        load.latencies.append(loop.time() - scheduled)
        idle.append(connection)

    tasks = []
    started = loop.time()
    for n, data in enumerate(statements):
        scheduled = started + n / per_second
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(data, scheduled)))
    await asyncio.gather(*tasks)
    load.seconds = loop.time() - started
    return load


async def reads(connect: Connect, path: str, token: str | None, seconds: float) -> Load:
    """CLIENTS clients reading `path` as fast as they are answered, for `seconds`."""
    load = Load()
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def client(connection: Connection, until: float) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            load.answered(await connection.request("GET", path, b"", headers), 200)
            load.latencies.append(time.perf_counter() - started)
            load.count += 1

    connections = [await connect() for _ in range(CLIENTS)]
    await asyncio.gather(*(client(c, time.perf_counter() + 0.5) for c in connections))
    load.count, load.latencies = 0, []
    started = time.perf_counter()
    await asyncio.gather(*(client(c, started + seconds) for c in connections))
    load.seconds = time.perf_counter() - started
    return load


async def _run(kind: str, url: str, measure: Callable[[Connect], Awaitable[Load]]) -> Load:
    async with clients(kind, url) as connect:
        return await measure(connect)


# -- in-process references ------------------------------------------------------------------------


def in_process_append_rate(url: str, count: int) -> float:
    """`DecisionRecord.submit` of the same kind of statements, on a fresh store."""
    authority_key = keys.generate()
    with DecisionRecord(url, ORIGIN, authority_key.public_key()) as record:
        authority = Authority(record, authority_key)
        authority.open("authority")
        statements = [s for items in prepare(record, authority).opinions(count) for s in items]

        def run() -> None:
            for data in statements:
                assert record.submit(data).created

        return rate(count, run)


def in_process_read_rate(home: Home, case: str, count: int) -> float:
    """`Projections.plan` of the case the HTTP readers read, from the same store."""
    with home.open_ledger() as record:
        database = Database(record.store)
        projections = Projections(database)
        assert projections.plan(case) is not None

        def run() -> None:
            for _ in range(count):
                projections.plan(case)

        try:
            return rate(count, run)
        finally:
            database.close()


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Measured:
    at_max: Load
    at_half: Load
    member: Load
    reviewer: Load
    ceiling: Load
    append_reference: float
    read_reference: float


def measure(store: str, url: str, reference_url: str, kind: str, profile: Path | None) -> Measured:
    with tempfile.TemporaryDirectory() as directory:
        home_path = Path(directory) / "home"
        init = ["--home", str(home_path), "--store", url, "init", "--origin", ORIGIN]
        subprocess.run([sys.executable, "-m", "api.cli", *init], check=True, capture_output=True)
        home = Home.load(home_path)
        with home.open_ledger() as record:
            prepared = prepare(record, home.authority(record))
        burst = prepared.opinions(SUBMISSIONS + CLIENTS * WARMUP)
        with serving(home_path, profile) as server:
            at_max = asyncio.run(
                _run(kind, server, lambda c: closed_loop(c, burst, SUBMIT_SECONDS))
            )
            at_max.check("submissions at full load")
            half = at_max.rate / 2
            steady = [s for items in prepared.opinions(round(half * PACED_SECONDS)) for s in items]
            at_half = asyncio.run(_run(kind, server, lambda c: paced(c, steady, half)))
            at_half.check("paced submissions")
            _settle(server)
            plan = f"/v1/cases/{prepared.read_case}/plan"
            member = asyncio.run(
                _run(kind, server, lambda c: reads(c, plan, prepared.member_token, READ_SECONDS))
            )
            member.check("member plan reads")
            reviewer = asyncio.run(
                _run(kind, server, lambda c: reads(c, plan, prepared.reviewer_token, READ_SECONDS))
            )
            reviewer.check("reviewer plan reads")
        read_reference = in_process_read_rate(home, prepared.read_case, IN_PROCESS_READS)
    with doing_nothing() as nothing:
        ceiling = asyncio.run(_run(kind, nothing, lambda c: reads(c, "/healthz", None, 3.0)))
        ceiling.check("do-nothing reads")
    append_reference = in_process_append_rate(reference_url, REFERENCE_SUBMISSIONS[store])
    return Measured(at_max, at_half, member, reviewer, ceiling, append_reference, read_reference)


def results(store: str, rounds: list[Measured]) -> list[Result]:
    """The rows, each the median of its rounds (as `bench.common.compared`)."""
    sqlite = store == "sqlite"

    def latency(
        name: str, load: Callable[[Measured], Load], p: float, target: float = 0.0
    ) -> Result:
        value = statistics.median(load(m).percentile(p) for m in rounds)
        budget = LATENCY_BUDGET_US
        return Result(name, store, value, "µs", budget, budget / value, target)

    def per_second(
        name: str,
        load: Callable[[Measured], Load],
        unit: str,
        reference: Callable[[Measured], float],
        target: float | None,
    ) -> Result:
        values = [load(m).rate for m in rounds]
        references = [reference(m) for m in rounds]
        result = compared(name, store, unit, values, references, 0.0)
        if sqlite and target is not None:
            result.target = target / result.reference
        return result

    return [
        per_second(
            "http_submit_rate",
            lambda m: m.at_max,
            "statements/s",
            lambda m: m.append_reference,
            TARGET_SUBMIT_RATE,
        ),
        latency("http_submit_p50_at_max", lambda m: m.at_max, 50),
        latency("http_submit_p99_at_max", lambda m: m.at_max, 99),
        latency("http_submit_p50_at_half", lambda m: m.at_half, 50),
        latency("http_submit_p99_at_half", lambda m: m.at_half, 99, 1.0 if sqlite else 0.0),
        per_second(
            "http_plan_read_rate",
            lambda m: m.member,
            "reads/s",
            lambda m: m.ceiling.rate,
            TARGET_READ_RATE,
        ),
        per_second(
            "http_reviewer_read_rate",
            lambda m: m.reviewer,
            "reads/s",
            lambda m: m.ceiling.rate,
            None,
        ),
    ]


def details(store: str, kind: str, round_: int, m: Measured) -> None:
    load_average = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(
        title=f"HTTP on {store}, round {round_ + 1}: {CLIENTS} {kind} clients, loopback,"
        f" keep-alive ({os.cpu_count()} CPUs, load average {load_average})"
    )
    for column in ("load", "requests", "seconds", "per second", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "load" else "right")
    for name, load in (
        ("POST statements, closed loop", m.at_max),
        (f"POST statements, paced at {m.at_max.rate / 2:,.0f}/s", m.at_half),
        ("GET plan, member token", m.member),
        ("GET plan, reviewer token (recorded)", m.reviewer),
        ("GET a do-nothing aiohttp handler", m.ceiling),
    ):
        table.add_row(
            name,
            f"{load.count:,}",
            f"{load.seconds:.2f}",
            f"{load.rate:,.0f}",
            f"{load.percentile(50) / 1000:.2f}",
            f"{load.percentile(99) / 1000:.2f}",
            f"{max(load.latencies) * 1000:.2f}",
        )
    table.add_row("in-process DecisionRecord.submit", "", "", f"{m.append_reference:,.0f}")
    table.add_row("in-process Projections.plan", "", "", f"{m.read_reference:,.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    parser.add_argument("--store", choices=["sqlite", "postgres"], help="only this store")
    parser.add_argument("--client", choices=["lean", "aiohttp"], default="lean")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--profile", action="store_true", help="profile the server (slower)")
    parser.add_argument("--serve-profiled", nargs=3, metavar=("OUT", "HOME", "PORT"))
    args = parser.parse_args()
    if args.serve_profiled:
        out, home, port = args.serve_profiled
        serve_profiled(Path(out), Path(home), int(port))
        return
    rows: list[Result] = []
    with store_urls() as kinds, tempfile.TemporaryDirectory() as scratch:
        for store, fresh in kinds:
            if args.store not in (None, store):
                continue
            rounds = []
            for round_ in range(args.rounds):
                profile = Path(scratch) / f"{store}{round_}.prof" if args.profile else None
                url, reference = fresh(f"http{round_}"), fresh(f"reference{round_}")
                rounds.append(measure(store, url, reference, args.client, profile))
                if profile is not None:
                    print_profile(profile, store)
                details(store, args.client, round_, rounds[-1])
            rows += results(store, rounds)
    report("http", rows)


if __name__ == "__main__":
    main()
