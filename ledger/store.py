"""Store URLs (`sqlite:///path`, `postgresql://user:pass@host:port/db`) as eventsourcing env."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from ledger.errors import LedgerError
from ledger.files import private_database, private_directory


class StoreURLError(LedgerError):
    """The store URL is not one the ledger understands."""

    code = "store_url"


@dataclass(frozen=True)
class Store:
    """A parsed store URL; `env` is what eventsourcing needs to open it."""

    url: str
    env: dict[str, str]

    @property
    def is_postgres(self) -> bool:
        return self.env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"

    @property
    def redacted(self) -> str:
        """The URL without its password, safe for logs and errors."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


def connect(store: Store, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A plain psycopg connection to a PostgreSQL store, on the store's schema."""
    env = store.env
    return psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        options=f"-c search_path={env.get('POSTGRES_SCHEMA', 'public')}",
        autocommit=autocommit,
    )


@contextmanager
def exclusive(store: Store, name: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock named `name` (per schema) for the block; no-op on SQLite.

    Processes starting together on one database would otherwise race creating the same
    tables ("tuple concurrently updated").
    """
    if not store.is_postgres:
        yield
        return
    schema = store.env.get("POSTGRES_SCHEMA", "public")
    with connect(store, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))", (name, schema))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", (name, schema))


def parse_store(url: str) -> Store:
    """Parse a store URL. SQLite paths follow SQLAlchemy: `sqlite:///rel`, `sqlite:////abs`."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise StoreURLError("sqlite:/// needs a file path")
        private_directory(Path(path).parent)
        private_database(Path(path))
        return Store(
            url,
            {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": path,
                "SQLITE_LOCK_TIMEOUT": "30",
            },
        )
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        dbname = parts.path.lstrip("/")
        if not dbname or not parts.hostname:
            raise StoreURLError("a PostgreSQL store URL needs a host and a database name")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(dbname),
            "POSTGRES_HOST": parts.hostname,
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_LOCK_TIMEOUT": "10",
        }
        schema = parse_qs(parts.query).get("schema")
        if schema:
            env["POSTGRES_SCHEMA"] = schema[0]
        return Store(url, env)
    raise StoreURLError(
        f"unsupported store URL scheme {parts.scheme or url!r}: use sqlite:/// or postgresql://"
    )
