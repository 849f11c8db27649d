"""Over HTTP, on each store: text with control or bidirectional control characters, or with
nothing visible, is a `malformed` problem naming the field, and the ledger is unchanged; a
ledger that already holds such text (from before the check) still verifies and rebuilds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from api.cli import main
from api.home import Home
from ledger import keys
from ledger.authority import Authority
from tests.api.conftest import ORIGIN
from tests.api.test_rejections import Scene, post, scene  # noqa: F401
from tests.conftest import World, fingerprint
from tests.domain.test_text import BAD, Opened, Unchecked


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=BAD)
def test_unclean_text_is_a_malformed_problem_naming_the_field(scene: Scene, text: str) -> None:  # noqa: F811
    before = fingerprint(scene.served.record)
    data = scene.sign("grace", "dissent.recorded", {"decision": scene.decision, "reasons": text})

    answer = post(scene.served.url, data)

    assert answer.status == 400, answer.body
    problem = answer.problem()
    assert problem["code"] == "malformed"
    assert problem["detail"].startswith("body.reasons: ")
    assert problem["detail"].endswith(("has no visible character", ")"))
    assert fingerprint(scene.served.record) == before


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("\x00", "body.reasons: contains a control character (U+0000)"),
        ("\u200b", "body.reasons: has no visible character"),
        ("\u202e" * 4000, "body.reasons: contains a bidirectional control character (U+202E)"),
    ],
)
def test_the_reported_texts_are_refused(scene: Scene, text: str, detail: str) -> None:  # noqa: F811
    before = fingerprint(scene.served.record)
    data = scene.sign("grace", "dissent.recorded", {"decision": scene.decision, "reasons": text})
    answer = post(scene.served.url, data)
    assert (answer.status, answer.problem()["detail"]) == (400, detail)
    assert fingerprint(scene.served.record) == before


def test_a_ledger_that_already_holds_such_text_still_verifies(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with older_ledger(tmp_path, store_url) as (home, opened):
        for reasons in ("\x00", "\u200b", "\u202e" * 4000):
            body = {"decision": opened.decision, "reasons": reasons}
            opened.say(opened.grace, "dissent.recorded", body)

    assert_verifies_exports_and_rebuilds(home, store_url, opened.case, tmp_path, capsys)
    with home.open_ledger() as record:
        case = record.case(opened.case)
        dissents = case.decisions[opened.decision].dissents
        assert [case.entries[h].body.reasons for h in dissents] == [
            "\x00",
            "\u200b",
            "\u202e" * 4000,
        ]


@contextlib.contextmanager
def older_ledger(tmp_path: Path, store_url: str) -> Iterator[tuple[Home, Opened]]:
    """A home whose ledger an earlier version wrote (`Unchecked`), with `Opened`'s case in it;
    the block says more through the `Opened`, then the older ledger is closed."""
    home = Home.create(tmp_path / "home", ORIGIN, store_url)
    authority_key = keys.load_private_key(home.path / "authority.pem")
    older = Unchecked(home.store, ORIGIN, authority_key.public_key())
    try:
        yield home, Opened(World(older, authority_key, Authority(older, authority_key)))
    finally:
        older.close()


def assert_verifies_exports_and_rebuilds(
    home: Home, store_url: str, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case exports as a bundle, the whole ledger and the bundle verify, and the projections
    rebuild, each through the command line."""
    args = ["--home", str(home.path), "--store", store_url]
    bundle = tmp_path / "bundle.json"
    assert main([*args, "export", case, "--bundle", str(bundle)]) == 0  # seals the log
    assert main([*args, "verify", "--workers", "1"]) == 0
    assert main([*args, "verify", "--bundle", str(bundle)]) == 0
    assert main([*args, "rebuild"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["wrote", "verified", "bundle", "rebuilt"]
