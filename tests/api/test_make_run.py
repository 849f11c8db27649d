"""`make run` as a new user runs it, on each store: with `ACCORD_HOME` naming an initialised home
and `PORT`/`HOST` of their choosing; and the README's SDK example, run as written against it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.home import Home

ROOT = Path(__file__).resolve().parents[2]
DEMO_ORIGIN = "accord.localhost/demo"


def readme_example() -> str:
    """The Python code block of the README's Client SDK section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**Client SDK**") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's SDK section has no Python example"
    return found.group(1)


@dataclass
class MadeRun:
    """What `make run` printed: where it serves and the reviewer token."""

    home: Path
    url: str
    token: str
    lines: list[str]


@pytest.fixture
def made_run(tmp_path: Path, store_url: str) -> Iterator[MadeRun]:
    home = tmp_path / "clinic-home"
    Home.create(home, DEMO_ORIGIN, store_url)  # already initialised: `make run` must use it
    env = {**os.environ, "ACCORD_HOME": str(home), "PORT": "0", "HOST": "127.0.0.1"}
    env.pop("ACCORD_STORE", None)
    command = ["make", "--no-print-directory", "-C", str(ROOT), "-o", ".venv/.installed"]
    command += [f"BIN={Path(sys.executable).parent}", "run"]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: make and the server stop together
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("reviewer token"):
            line = process.stdout.readline()
            assert line, f"make run stopped early:\n{''.join(lines)}"
            lines.append(line)
        serving = next(line for line in lines if line.startswith("serving "))
        url = serving.split(" at ")[1].strip()
        yield MadeRun(home, url, lines[-1].split()[-1], lines)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_make_run_serves_the_home_in_accord_home_on_the_port_asked_for(made_run: MadeRun) -> None:
    assert not any("already initialised" in line for line in made_run.lines)
    assert any(line.startswith(f"serving {DEMO_ORIGIN} at ") for line in made_run.lines)
    assert made_run.url.startswith("http://127.0.0.1:") and not made_run.url.endswith(":8080")
    assert (made_run.home / "demo" / "state.json").exists()


def test_the_readme_sdk_example_runs_as_written_against_make_run(made_run: MadeRun) -> None:
    env = {
        **os.environ,
        "ACCORD_HOME": str(made_run.home),
        "ACCORD_URL": made_run.url,
        "TOKEN": made_run.token,
    }
    ran = subprocess.run(
        [sys.executable, "-c", readme_example()],
        env=env,
        cwd=made_run.home.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    said, read = ran.stdout.splitlines()
    assert said.startswith(("recorded as entry ", "refused: "))
    assert read.startswith("Amara's physiotherapy - ")
