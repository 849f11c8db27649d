"""Files the command line writes: only their owner reads them, no symbolic link is followed, no
file is overwritten unless `--force` says so; the stores `init` creates are private too."""

# ruff: noqa: F811

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.cli import main
from api.home import Home

# The bundle tests' fixtures, used here by name:
from tests.api.test_bundle import Exported, exported, templates  # noqa: F401
from tests.api.test_cli import CLI


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def run_export(
    exported: Exported, capsys: pytest.CaptureFixture[str], bundle: Path, *flags: str
) -> tuple[int, str, str]:
    cli = CLI(exported.sealed.home.path, exported.sealed.url, capsys)
    return cli("export", str(exported.sealed.case), "--bundle", str(bundle), *flags)


def test_an_exported_bundle_is_readable_only_by_its_owner(exported: Exported) -> None:
    assert mode(exported.bundle) == 0o600


def test_export_does_not_overwrite_a_file_without_force(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")

    code, out, err = run_export(exported, capsys, existing)

    assert (code, out) == (1, "")
    refused = f"{existing} exists; it is not overwritten; pass --force to replace it"
    assert err == f"accord: file_exists: {refused}"
    assert existing.read_text() == "mine\n"


def test_export_with_force_replaces_the_file_with_a_private_one(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    existing = tmp_path / "old.bundle.json"
    existing.write_text("an older bundle\n")
    existing.chmod(0o644)

    code, out, err = run_export(exported, capsys, existing, "--force")

    assert (code, out, err) == (0, f"wrote {existing}", "")
    assert existing.read_bytes() == exported.bundle.read_bytes()
    assert mode(existing) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("flags", [(), ("--force",)])
def test_export_never_writes_through_a_symbolic_link(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: tuple[str, ...]
) -> None:
    target = tmp_path / "target.txt"
    target.write_text("someone else's file\n")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere")

    for path in (link, dangling):
        code, out, err = run_export(exported, capsys, path, *flags)
        assert (code, out) == (1, "")
        assert err == (
            f"accord: symlink: {path} is a symbolic link; remove it or choose another path"
        )
        assert path.is_symlink()
    assert target.read_text() == "someone else's file\n"
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("case", ["nope", "1234", "not-a-uuid-at-all-0000000000000000000"])
def test_a_malformed_case_id_is_one_line_not_a_traceback(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    cli = CLI(exported.sealed.home.path, exported.sealed.url, capsys)
    bundle = tmp_path / "b.json"

    code, out, err = cli("export", case, "--bundle", str(bundle))

    assert (code, out) == (1, "")
    assert err == f"accord: malformed: case id {case!r} is not a UUID"
    assert not bundle.exists()


def test_key_new_writes_both_files_privately_and_never_through_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k.pem"
    assert main(["key", "new", "--out", str(out)]) == 0
    assert mode(out) == mode(Path(f"{out}.pub")) == 0o600

    target = tmp_path / "target"
    target.write_text("untouched\n")
    link = tmp_path / "l.pem"
    link.symlink_to(target)
    capsys.readouterr()
    assert main(["key", "new", "--out", str(link)]) == 1
    assert "symbolic link" in capsys.readouterr().err
    assert target.read_text() == "untouched\n"
    assert not Path(f"{link}.pub").exists()


def private_tree(root: Path) -> dict[str, int]:
    """Every path under `root` whose mode lets anyone but its owner in (not looking inside
    folders that are closed to others)."""
    found = {}
    for path in [root, *root.rglob("*")]:
        if path.parent != root and path != root and mode(path.parent) & 0o077 == 0:
            continue
        if mode(path) & 0o077:
            found[str(path.relative_to(root))] = mode(path)
    return found


def test_init_and_serving_keep_the_home_and_its_databases_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    code = main(["--home", str(home), "init", "--origin", "clinic.example/accord"])
    assert code == 0
    capsys.readouterr()
    loaded = Home.load(home)
    with loaded.open_ledger() as ledger:
        # While a ledger is open SQLite keeps its write-ahead log and shared memory beside it.
        assert {p.name for p in home.iterdir()} >= {"ledger.db", "ledger.db-wal", "ledger.db-shm"}
        assert private_tree(home) == {}
        assert ledger.size() == 2
    assert main(["--home", str(home), "demo"]) == 0
    assert main(["--home", str(home), "rebuild"]) == 0
    capsys.readouterr()
    assert (home / "ledger.projections.db").exists()
    assert private_tree(home) == {}


def test_a_sqlite_store_in_new_folders_gets_private_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "stores" / "clinic" / "ledger.db"
    home = tmp_path / "home"
    args = ["--home", str(home), "--store", f"sqlite:///{store}"]
    assert main([*args, "init", "--origin", "clinic.example/accord"]) == 0
    assert main([*args, "rebuild"]) == 0
    capsys.readouterr()
    assert private_tree(tmp_path / "stores") == {}
    assert mode(tmp_path / "stores") == 0o700
    assert mode(store) == 0o600
