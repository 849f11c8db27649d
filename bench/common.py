"""Shared benchmark plumbing: stores to measure on, timing, and the results table and file."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"
PG_DSN = os.environ.get("ACCORD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class Result(msgspec.Struct):
    """One measured figure next to its reference from the same run."""

    name: str
    store: str
    value: float
    unit: str
    reference: float
    ratio: float
    target: float


@contextmanager
def store_urls() -> Iterator[Iterator[tuple[str, Callable[[str], str]]]]:
    """Yield (store kind, url factory) pairs; each factory call gives a fresh, empty store."""
    with tempfile.TemporaryDirectory() as directory:
        schemas: list[str] = []

        def sqlite_url(name: str) -> str:
            return f"sqlite:///{Path(directory) / name}.db"

        def postgres_url(name: str) -> str:
            schema = f"accord_bench_{name}_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            schemas.append(schema)
            return f"{PG_DSN}?schema={schema}"

        def kinds() -> Iterator[tuple[str, Callable[[str], str]]]:
            yield "sqlite", sqlite_url
            try:
                psycopg.connect(PG_DSN, connect_timeout=3).close()
            except psycopg.Error as exc:
                Console(stderr=True).print(f"[yellow]PostgreSQL skipped: {exc}")
                return
            yield "postgres", postgres_url

        try:
            yield kinds()
        finally:
            if schemas:
                with psycopg.connect(PG_DSN, autocommit=True) as conn:
                    for schema in schemas:
                        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class Note(Aggregate):
    """The reference aggregate: every event carries an entry-sized payload."""

    @event("Noted")
    def note(self, payload: str) -> None:
        pass


class Reference(Application[uuid.UUID]):
    """Plain eventsourcing, as the reference every ratio is measured against."""

    name = "Reference"


def compared(
    name: str, store: str, unit: str, values: list[float], references: list[float], target: float
) -> Result:
    """A result from repeated measurements: medians, and their ratio."""
    value, reference = statistics.median(values), statistics.median(references)
    return Result(name, store, value, unit, reference, value / reference, target)


def rate(count: int, run: Callable[[], None]) -> float:
    """Operations per second of `run`, which performs `count` operations."""
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def report(name: str, results: list[Result]) -> None:
    """Print the results as a table and write them to bench/results/NAME.json."""
    table = Table(title=f"bench/{name}.py")
    for column in ("name", "store", "value", "unit", "reference", "ratio", "target", "ok"):
        table.add_column(column, justify="right" if column not in ("name", "store") else "left")
    for r in results:
        ok = "yes" if r.ratio >= r.target else "NO"
        table.add_row(
            r.name,
            r.store,
            f"{r.value:,.0f}",
            r.unit,
            f"{r.reference:,.0f}",
            f"{r.ratio:.2f}",
            f"{r.target:.2f}",
            ok,
        )
    Console(width=120).print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(results)) + b"\n")
    Console().print(f"wrote {path}")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    """Wait (up to a minute) until a server started as a subprocess answers /healthz."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy")
