"""The client SDK stands on its own: importing it loads none of the server's modules, so a
service that only reads or subscribes carries no server code (nor a database driver)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# The server's modules: the HTTP application and its processes, the stores and their followers.
SERVER = {
    "api.app",
    "api.server",
    "api.background",
    "api.events",
    "api.metrics",
    "api.openapi",
    "api.problems",
    "api.tokens",
    "api.home",
    "api.refusals",
    "domain.record",
    "domain.rules",
    "ledger.ledger",
    "ledger.log",
    "ledger.tables",
    "ledger.store",
    "ledger.access",
    "ledger.verify",
    "ledger.leader",
    "ledger.bundle",
    "projections.database",
    "projections.follower",
    "projections.queries",
    "projections.views",
    "psycopg",
}


def loaded_by(module: str) -> set[str]:
    """The modules a fresh interpreter has loaded after importing `module`."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout))


def test_importing_the_client_sdk_loads_no_server_code() -> None:
    loaded = loaded_by("api.client")

    assert "api.subscriber" in loaded  # the SDK itself is there
    assert loaded & SERVER == set()


def test_the_server_application_does_load_them() -> None:
    # The check above can fail: the same look at the server finds its modules.
    assert {"api.app", "ledger.ledger", "projections.follower"} <= loaded_by("api.server")
