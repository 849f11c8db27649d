"""Evidence bundles, on each store: the worked case's bundle, exported by `accord export` or
served to a reviewer, verifies offline with nothing but the ledger's public key; any changed
byte of an entry, or another ledger key, makes it fail; it discloses no one unrelated."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.cli import main
from api.tokens import Scope
from api.verify import verify_file
from ledger import keys
from ledger.canonical import canonical
from ledger.errors import Malformed
from ledger.keys import Ed25519PublicKey
from ledger.verify import VerificationFailed
from tests.api.conftest import Served
from tests.api.test_cli import CLI
from tests.api.test_verify import CASE_SIZE, Sealed, Templates, worked_case_templates

UNRELATED = "Quentin Farrow-Unrelated"
OTHER_CHILD = "Zara Another-Child"


@dataclass
class Exported:
    """A home holding the worked case (and one unrelated person), and the case's bundle as
    `accord export` wrote it."""

    sealed: Sealed
    bundle: Path
    unrelated: str  # the unrelated person's id
    unrelated_kid: str

    @property
    def ledger_key(self) -> str:
        return self.sealed.home.config.ledger_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.sealed.ledger_key.public_key()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    with worked_case_templates(tmp_path_factory.mktemp("templates")) as made:
        yield made


@pytest.fixture
def exported(
    tmp_path: Path, store_url: str, templates: Templates, capsys: pytest.CaptureFixture[str]
) -> Iterator[Exported]:
    sealed = templates.copy(tmp_path / "home", store_url)
    try:
        unrelated = sealed.world.person(UNRELATED, "adult")
        bundle = tmp_path / "amara.bundle.json"
        cli = CLI(sealed.home.path, store_url, capsys)
        assert cli.ok("export", str(sealed.case), "--bundle", str(bundle)) == f"wrote {bundle}"
        yield Exported(sealed, bundle, unrelated.person, unrelated.kid)
    finally:
        sealed.record.close()


class Offline:
    """Runs `accord verify --bundle ...` from a directory that holds no ledger home."""

    def __init__(self, where: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.where, self.capsys = where, capsys

    def __call__(self, bundle: Path, ledger_key: str) -> tuple[int, str, str]:
        code = main(["verify", "--bundle", str(bundle), f"--ledger-key={ledger_key}"])
        out, err = self.capsys.readouterr()
        assert not (self.where / ".accord").exists()
        return code, out.strip(), err.strip()


@pytest.fixture
def offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Offline:
    nowhere = tmp_path / "reviewer"
    nowhere.mkdir()
    monkeypatch.chdir(nowhere)
    monkeypatch.delenv("ACCORD_HOME", raising=False)
    monkeypatch.delenv("ACCORD_STORE", raising=False)
    return Offline(nowhere, capsys)


def entry_spans(data: bytes) -> list[tuple[int, int]]:
    """Where each entry's JSON text (case and directory) sits in the bundle's bytes."""
    document = json.loads(data)
    spans = []
    for item in document["entries"] + document["directory"]:
        text = canonical(item["entry"])
        start = data.index(text)
        spans.append((start, start + len(text)))
    return spans


# -- what verifies ----------------------------------------------------------------------------


def test_an_exported_bundle_verifies_offline_with_only_the_ledger_key(
    exported: Exported, offline: Offline
) -> None:
    code, out, err = offline(exported.bundle, exported.ledger_key)

    assert (code, err) == (0, "")
    assert out.startswith(f"bundle verified: {CASE_SIZE} entries of {exported.sealed.case} and ")
    assert "signed by the ledger key" in out


def test_the_ledger_key_may_be_given_as_its_pub_file(exported: Exported, offline: Offline) -> None:
    pub = offline.where / "ledger.pub"
    pub.write_text(exported.ledger_key + "\n")

    code, _, err = offline(exported.bundle, str(pub))

    assert (code, err) == (0, "")


def test_an_exported_bundle_holds_the_whole_case_proved_against_one_checkpoint(
    exported: Exported,
) -> None:
    report = verify_file(exported.bundle.read_bytes(), exported.public_key)

    assert report.stream == str(exported.sealed.case)
    assert report.entries == CASE_SIZE
    assert report.pending == 0
    assert report.checkpoint.size == exported.sealed.seal().size
    # The authority and its key, each of the seven people of the case and their key, and the
    # school's registration.
    assert report.directory_entries == 17


# -- what does not ----------------------------------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_changed_byte_of_any_entry_makes_the_bundle_fail(
    exported: Exported, data: st.DataObject
) -> None:
    original = exported.bundle.read_bytes()
    start, end = data.draw(st.sampled_from(entry_spans(original)), label="entry")
    offset = data.draw(st.integers(start, end - 1), label="offset")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(original)
    changed[offset] ^= flip

    with pytest.raises((VerificationFailed, Malformed)):
        verify_file(bytes(changed), exported.public_key)


def test_a_changed_entry_is_named_by_its_position_and_the_cli_exits_1(
    exported: Exported, offline: Offline
) -> None:
    data = exported.bundle.read_bytes()
    view = exported.sealed.worked.played.receipts["view"]
    position = exported.sealed.position(exported.sealed.case, view.seq)
    changed = offline.where / "changed.json"
    changed.write_bytes(data.replace(b"Clinic is tiring", b"Clinic is boring", 1))

    code, out, err = offline(changed, exported.ledger_key)

    assert (code, out) == (1, "")
    assert err.startswith(f"accord: verification_failed: position {position}, ")
    assert len(err.splitlines()) == 1


def test_an_entry_text_with_a_duplicated_key_is_not_the_signed_entry_and_fails(
    exported: Exported,
) -> None:
    # A reader keeping the first of two values would see the forged view; the signed bytes
    # hold only the real one. The bundle must carry the signed bytes, not a look-alike.
    data = exported.bundle.read_bytes()
    real = b'"view":"I like swimming.'
    assert data.count(real) == 1
    forged = data.replace(real, b'"view":"I want clinic twice a week.",' + real, 1)

    with pytest.raises((VerificationFailed, Malformed)):
        verify_file(forged, exported.public_key)


def test_a_bundle_checked_against_another_ledger_key_fails(
    exported: Exported, offline: Offline
) -> None:
    other = keys.public_key_b64(keys.generate())

    code, out, err = offline(exported.bundle, other)

    assert (code, out) == (1, "")
    assert err.startswith("accord: verification_failed: ")
    assert "ledger key" in err


def test_a_failed_checkpoint_is_not_reported_as_an_unsealed_entry(
    exported: Exported, offline: Offline
) -> None:
    code, _, err = offline(exported.bundle, keys.public_key_b64(keys.generate()))

    assert code == 1
    assert "unsealed entry" not in err, err


def test_a_member_later_appointed_reviewer_leaves_the_bundle_verifying(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sealed = exported.sealed
    sealed.world.authority.appoint_reviewer(sealed.worked.authors["sam"].person)
    again = tmp_path / "again.json"
    CLI(sealed.home.path, sealed.url, capsys).ok("export", str(sealed.case), "--bundle", str(again))

    verify_file(again.read_bytes(), exported.public_key)


# -- what it discloses ------------------------------------------------------------------------


def test_a_bundle_does_not_disclose_people_unrelated_to_the_case(exported: Exported) -> None:
    data = exported.bundle.read_bytes()

    assert UNRELATED.encode() not in data
    assert exported.unrelated.encode() not in data
    assert exported.unrelated_kid.encode() not in data
    for person in exported.sealed.worked.authors.values():
        assert person.person.encode() in data


def test_a_person_quoted_in_free_text_is_not_disclosed_and_the_bundle_still_verifies(
    exported: Exported, capsys: pytest.CaptureFixture[str], tmp_path: Path, offline: Offline
) -> None:
    sealed = exported.sealed
    world, worked = sealed.world, sealed.worked
    other = world.person(OTHER_CHILD, "child", born="2016-05-02")
    daniel = worked.authors["daniel"]
    # Free text holding nothing but the other child's id, then their key's id.
    for quoted in (other.person, other.kid):
        dissent = {"decision": worked.played.decision, "reasons": quoted}
        sealed.record.submit(daniel.submission(str(sealed.case), "dissent.recorded", dissent))
    # A named person's key revoked later: the bundle keeps the revocation, since the key
    # signed entries it holds.
    world.authority.revoke(daniel.kid, "Phone replaced")
    sealed.seal()
    again = tmp_path / "again.json"
    CLI(sealed.home.path, sealed.url, capsys).ok("export", str(sealed.case), "--bundle", str(again))
    data = again.read_bytes()

    assert other.person.encode() in data  # the dissent, as written
    directory = [item["entry"] for item in json.loads(data)["directory"]]
    assert not any(OTHER_CHILD in canonical(entry).decode() for entry in directory)
    assert not any(other.kid == entry["statement"]["body"].get("kid") for entry in directory)
    assert not any(other.person == entry["statement"]["body"].get("person") for entry in directory)
    assert b"2016-05-02" not in data
    assert b"Phone replaced" in data
    report = verify_file(data, exported.public_key)
    assert report.entries == CASE_SIZE + 2
    assert report.directory_entries == 18  # the 17 as before, and Daniel's key's revocation
    code, _, err = offline(again, exported.ledger_key)
    assert (code, err) == (0, "")


# -- served to a reviewer ---------------------------------------------------------------------


def fetch_bundle(served: Served, case: str, token: str) -> bytes:
    """GET the case's bundle, once the sealer has signed a checkpoint covering all of it."""
    deadline = time.monotonic() + 20
    while True:
        request = urllib.request.Request(
            f"{served.url}/v1/cases/{case}/bundle", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            data: bytes = response.read()
        if json.loads(data)["pending"] == 0 or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def test_a_bundle_served_to_a_reviewer_verifies_offline(served: Served, offline: Offline) -> None:
    played = served.play_worked_case()
    served.person(UNRELATED, "adult")
    reviewer = served.reviewer()
    data = fetch_bundle(served, played.case, served.token(reviewer, Scope.REVIEWER))
    bundle = offline.where / "served.json"
    bundle.write_bytes(data)

    code, out, err = offline(bundle, served.home.config.ledger_key)

    assert (code, err) == (0, "")
    assert out.startswith(f"bundle verified: {CASE_SIZE} entries of {played.case} and ")
    assert UNRELATED.encode() not in data
    assert b"Jo Marsh" not in data  # the reviewer who asked for it is not part of the case
