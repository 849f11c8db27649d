"""The `accord` command line: init, people, keys; one clear line and non-zero exit on errors."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.cli import main
from api.home import Home
from domain.record import DecisionRecord
from ledger import keys
from ledger.author import Author
from ledger.errors import KeyRevoked
from projections.database import Database
from tests.projections.conftest import dump


class CLI:
    """Runs `accord --home HOME [--store URL] ...` in-process, capturing what it prints."""

    def __init__(self, home: Path, store: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.home, self.store, self.capsys = home, store, capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main(["--home", str(self.home), "--store", self.store, *args])
        out, err = self.capsys.readouterr()
        return code, out.strip(), err.strip()

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert (code, err) == (0, ""), err
        return out


@pytest.fixture
def cli(tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> CLI:
    command = CLI(tmp_path / "home", store_url, capsys)
    command.ok("init", "--origin", "clinic.example/accord")
    return command


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_private_keys_readable_only_by_their_owner(cli: CLI) -> None:
    assert mode(cli.home) == 0o700
    assert mode(cli.home / "config.json") == 0o600  # it may hold the store's password
    for name in ("authority.pem", "ledger.pem"):
        assert mode(cli.home / name) == 0o600
        keys.load_private_key(cli.home / name)
    status = cli.ok("status")
    assert "clinic.example/accord" in status
    assert "entries        2" in status  # the authority registered itself and bound its key


def test_init_twice_is_refused(cli: CLI) -> None:
    code, _, err = cli("init", "--origin", "clinic.example/accord")
    assert code == 1
    assert err == f"accord: home: {cli.home} is already initialised"


def open_case(ledger: DecisionRecord, author: Author, child: str) -> bytes:
    body = {"child": child, "title": "Physiotherapy", "lead": author.person}
    return author.submission(str(uuid.uuid4()), "case.opened", body)


def test_a_person_with_a_new_key_can_sign_statements(cli: CLI, tmp_path: Path) -> None:
    child = cli.ok("person", "add", "--name", "Amara", "--kind", "child", "--born", "2017-03-14")
    person = cli.ok(
        "person",
        "add",
        "--name",
        "Dr Okafor",
        "--kind",
        "professional",
        "--profession",
        "paediatrician",
    )
    assert str(uuid.UUID(person)) == person
    key_file = tmp_path / "okafor.pem"
    kid = cli.ok("key", "new", "--out", str(key_file))
    assert mode(key_file) == 0o600

    assert cli.ok("key", "bind", "--person", person, "--public-key", f"{key_file}.pub") == kid

    home = Home.load(cli.home)
    with home.open_ledger(cli.store) as ledger:
        author = Author(ledger.origin, person, keys.load_private_key(key_file))
        assert ledger.submit(open_case(ledger, author, child)).created
        assert ledger.directory().persons[person].keys == [kid]
        assert ledger.directory().persons[child].born == "2017-03-14"


def test_a_revoked_key_no_longer_signs(cli: CLI, tmp_path: Path) -> None:
    child = cli.ok("person", "add", "--name", "Amara", "--kind", "child")
    person = cli.ok("person", "add", "--name", "Sam", "--kind", "professional")
    key_file = tmp_path / "sam.pem"
    kid = cli.ok("key", "new", "--out", str(key_file))
    cli.ok("key", "bind", "--person", person, "--public-key", f"{key_file}.pub")
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # A kid is base64url and may begin with "-": the "=" form keeps argparse from reading
    # it as an option.
    cli.ok(
        "key",
        "revoke",
        f"--kid={kid}",
        "--reason",
        "left",
        "--compromised-since",
        since,
    )

    with Home.load(cli.home).open_ledger(cli.store) as ledger:
        record = ledger.directory().keys[kid]
        assert record.compromised_since == since[:-1] + ".000Z"
        author = Author(ledger.origin, person, keys.load_private_key(key_file))
        with pytest.raises(KeyRevoked):
            ledger.submit(open_case(ledger, author, child))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("person", "add", "--name", "X", "--kind", "adult", "--born", "2020-02-30"),
            "accord: malformed: person.registered body: Invalid RFC3339 encoded date - at `$.born`",
        ),
        (
            ("key", "revoke", "--kid", "A" * 43, "--reason", "x"),
            f"accord: unknown_key: key {'A' * 43} is not bound to anyone in the directory",
        ),
        (
            ("key", "bind", "--person", str(uuid.UUID(int=1)), "--public-key", "/nonexistent.pub"),
            "accord: key_file: cannot read public key file /nonexistent.pub",
        ),
    ],
    ids=["impossible-birth-date", "unknown-kid", "missing-key-file"],
)
def test_errors_print_one_clear_line_and_change_nothing(
    cli: CLI, args: tuple[str, ...], message: str
) -> None:
    before = cli.ok("status")

    code, out, err = cli(*args)

    assert code == 1
    assert out == ""
    assert err.startswith(message)
    assert len(err.splitlines()) == 1
    assert cli.ok("status") == before


def test_binding_a_private_key_file_is_refused_with_a_hint(cli: CLI, tmp_path: Path) -> None:
    person = cli.ok("person", "add", "--name", "Priya", "--kind", "professional")
    key_file = tmp_path / "priya.pem"
    cli.ok("key", "new", "--out", str(key_file))

    code, _, err = cli("key", "bind", "--person", person, "--public-key", str(key_file))

    assert code == 1
    assert "pass the .pub file" in err


def test_commands_need_an_initialised_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path / "none"), "status"]) == 1
    assert "run `accord init --origin ORIGIN`" in capsys.readouterr().err


def test_key_new_never_overwrites_a_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "k.pem"
    assert main(["key", "new", "--out", str(key_file)]) == 0
    original = key_file.read_bytes()

    assert main(["key", "new", "--out", str(key_file)]) == 1
    assert key_file.read_bytes() == original
    assert "exists" in capsys.readouterr().err


def test_the_demo_plays_the_worked_case_once_however_often_it_runs(cli: CLI) -> None:
    first = cli.ok("demo")
    assert "status: agreed" in first
    assert "* One clinic session plus a daily home programme" in first
    assert "withdrawn" in first
    # The school is a registered organisation: named by id in the case, shown by its name.
    assert "sharing with Hillside Primary School until" in first
    assert "Shared with Hillside Primary School on the basis of consent" in first
    assert first.endswith("25 new entries (0 already recorded)")
    entries = cli.ok("status")

    second = cli.ok("demo")

    assert second.endswith("0 new entries (25 already recorded)")
    assert cli.ok("status") == entries
    for key_file in (cli.home / "demo").glob("*.pem"):
        assert mode(key_file) == 0o600
    assert mode(cli.home / "demo" / "state.json") == 0o600


def test_a_demo_home_of_an_earlier_version_gets_the_case_played_afresh_beside_its_own(
    cli: CLI,
) -> None:
    cli.ok("demo")
    state_file = cli.home / "demo" / "state.json"
    state = json.loads(state_file.read_text())
    del state["organisations"]  # as an earlier demo, which named the school by name, kept it
    state_file.write_text(json.dumps(state))

    again = cli.ok("demo")

    assert again.endswith("25 new entries (0 already recorded)")
    assert json.loads(state_file.read_text())["case"] != state["case"]
    assert cli.ok("demo").endswith("0 new entries (25 already recorded)")
    code, out, _ = cli("verify", "--workers", "1")  # its progress bar goes to stderr
    assert code == 0
    assert "the rules hold" in out


def test_rebuild_restores_the_projections_from_the_log(cli: CLI) -> None:
    cli.ok("demo")
    code, out, progress = cli("rebuild")
    assert code == 0
    assert out.startswith("rebuilt plan, register, trace, audit, access from ")
    assert "rebuilding" in progress  # the progress bar goes to stderr
    home = Home.load(cli.home)
    with home.open_ledger(cli.store) as ledger:
        database = Database(ledger.store)
        before = dump(database)
        assert len(before["projection_audit"]) == ledger.size()

        assert cli("rebuild", "audit")[:2] == (0, f"rebuilt audit from {ledger.size()} entries")
        assert dump(database) == before
        database.close()


def test_rebuild_refuses_an_unknown_projection(cli: CLI) -> None:
    with pytest.raises(SystemExit):
        cli("rebuild", "nonsense")


def test_init_closes_an_existing_home_folder_to_others(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    CLI(home, store_url, capsys).ok("init", "--origin", "clinic.example/accord")
    assert mode(home) == 0o700
