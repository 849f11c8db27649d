"""What the command line says when a new user gets something wrong: the fix, in plain words,
on one line (exit 1), or argparse's usage for a command line that does not parse (exit 2)."""

# ruff: noqa: F811

from __future__ import annotations

import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from api.cli import main
from api.home import Home
from api.tokens import Scope
from tests.api.conftest import ORIGIN, Served, serve_in_thread
from tests.api.test_bundle import Exported, exported, templates  # noqa: F401
from tests.api.test_cli import CLI, cli  # noqa: F401
from tests.conftest import fingerprint


def test_an_argument_error_exits_2_with_argparse_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export", "--bundle", "b.json"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: accord export ")
    assert "error: the following arguments are required: case" in err
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "exits 2" in readme


def test_verifying_a_bundle_without_a_home_asks_for_the_ledger_key(
    exported: Exported,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "reviewer"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("ACCORD_HOME", raising=False)

    assert main(["verify", "--bundle", str(exported.bundle)]) == 1

    err = capsys.readouterr().err.strip()
    assert err.startswith("accord: ledger_key_required: ")
    assert "--ledger-key" in err and "accord init" not in err
    assert len(err.splitlines()) == 1


def test_a_birth_date_in_the_future_is_refused_naming_the_field(cli: CLI) -> None:
    home = cli.home
    before = cli.ok("status")
    tomorrow_but_one = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()

    for born in ("2030-01-01", tomorrow_but_one):
        code, out, err = cli("person", "add", "--name", "Baby", "--kind", "child", "--born", born)
        assert (code, out) == (1, "")
        assert err == f"accord: malformed: body.born: {born} is in the future"
    assert cli.ok("status") == before
    today = datetime.now(UTC).date().isoformat()
    assert cli.ok("person", "add", "--name", "Newborn", "--kind", "child", "--born", today)
    assert home.exists()


def test_revoking_a_malformed_or_unknown_kid_says_so_plainly(cli: CLI) -> None:
    before = cli.ok("status")

    code, _, err = cli("key", "revoke", "--kid=nonexistent", "--reason", "lost")
    assert code == 1
    assert err == "accord: malformed: body.kid: is not a key id (43 base64url characters)"

    unknown = "A" * 43
    code, _, err = cli("key", "revoke", f"--kid={unknown}", "--reason", "lost")
    assert code == 1
    assert err == f"accord: unknown_key: key {unknown} is not bound to anyone in the directory"
    assert not re.search(r"regex|\\Z|\^\[", err)
    assert cli.ok("status") == before


def test_a_malformed_person_id_names_the_field_without_a_regular_expression(cli: CLI) -> None:
    code, _, err = cli("token", "issue", "--person", "nobody", "--scope", "member")
    assert code == 1
    assert "regex" not in err and "\\Z" not in err


def test_the_rebuild_progress_never_counts_past_its_total(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home.create(tmp_path / "home", ORIGIN, store_url)
    with serve_in_thread(home) as server:
        record = server.service.record
        served = Served(server.url, home, record, home.authority(record))
        played = served.play_worked_case()
        reviewer = served.reviewer()
        with served.client(served.token(reviewer, Scope.REVIEWER)) as client:
            for _ in range(3):  # each read by a reviewer is recorded in the log, as entries are
                client.plan(played.case)
        entries = record.size()
    cli = CLI(home.path, store_url, capsys)  # the server has stopped: the rebuild is alone

    code, out, progress = cli("rebuild")

    assert code == 0
    assert out.endswith(f"from {entries} entries and 3 recorded reads")
    counts = [(int(done), int(total)) for done, total in re.findall(r"(\d+)/(\d+)", progress)]
    assert counts, progress
    assert all(done <= total for done, total in counts), progress
    assert counts[-1] == (entries + 3, entries + 3)


def test_an_admin_token_is_an_admin_token(served: Served) -> None:
    played = served.play_worked_case()
    token = served.token(served.administrator(), Scope.ADMIN)
    before = fingerprint(served.record)
    request = urllib.request.Request(
        f"{served.url}/v1/cases/{played.case}/plan", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    with refused.value as answer:
        assert answer.code == 403
        assert orjson.loads(answer.read())["detail"] == "an admin token does not read cases"
    assert fingerprint(served.record) == before
