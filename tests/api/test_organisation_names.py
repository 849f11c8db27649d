"""Organisations are named by their registered id in new statements; a ledger recorded before
organisations were registered, whose statements name them by name, still folds, verifies,
exports and rebuilds."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from api.cli import main
from api.home import Home
from domain.errors import RuleViolated
from domain.record import DecisionRecord
from ledger import keys
from ledger.authority import Authority
from tests.api.conftest import ORIGIN
from tests.conftest import World, fingerprint, open_world
from tests.domain.test_text import Opened, Unchecked

SCHOOL = "Hillside Primary School"


def sharing(organisation: str) -> dict[str, object]:
    scope = {
        "type": "sharing",
        "organisation": organisation,
        "purpose": "Exercise plan at school",
        "data_kinds": ["action"],
        "until": "2099-01-01",
    }
    return {"scope": scope, "basis": "Grace agrees the school may see the plan"}


def test_a_new_statement_naming_an_organisation_by_name_is_refused(store_url: str) -> None:
    world = open_world(store_url, DecisionRecord)
    try:
        opened = Opened(world)
        registered = world.organisation(SCHOOL)
        before = fingerprint(world.ledger)

        with pytest.raises(RuleViolated) as refused:
            opened.say(opened.grace, "consent.given", sharing(SCHOOL))

        assert refused.value.rule == "R5"
        assert "registered" in refused.value.detail
        assert fingerprint(world.ledger) == before
        opened.say(opened.grace, "consent.given", sharing(registered))  # by id: accepted
    finally:
        world.ledger.close()


def test_a_ledger_that_names_organisations_by_name_still_verifies(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home.create(tmp_path / "home", ORIGIN, store_url)
    authority_key = keys.load_private_key(home.path / "authority.pem")
    older = Unchecked(home.store, ORIGIN, authority_key.public_key())
    try:
        world = World(older, authority_key, Authority(older, authority_key))
        opened = Opened(world)
        teacher = world.person("Ms Hale", "professional", profession="teacher")
        joined = {"person": teacher.person, "role": "external_partner", "organisation": SCHOOL}
        opened.say(opened.lead, "participant.joined", joined)
        opened.say(opened.grace, "consent.given", sharing(SCHOOL))
        consent = older.case(opened.case).version
        share = {
            "recipient": SCHOOL,
            "purpose": "Exercise plan at school",
            "what": "The home exercise programme",
            "basis": "consent",
            "consent": older.entry(uuid.UUID(opened.case), consent).hash,
        }
        opened.say(opened.lead, "information.shared", share)
    finally:
        older.close()

    args = ["--home", str(home.path), "--store", store_url]
    bundle = tmp_path / "bundle.json"
    assert main([*args, "export", opened.case, "--bundle", str(bundle)]) == 0  # seals the log
    assert main([*args, "verify", "--workers", "1"]) == 0
    assert main([*args, "verify", "--bundle", str(bundle)]) == 0
    assert main([*args, "rebuild"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["wrote", "verified", "bundle", "rebuilt"]
    with DecisionRecord(home.store, ORIGIN, authority_key.public_key()) as record:
        case = record.case(opened.case)
        partner = case.member(teacher.person)
        assert partner is not None
        assert partner.organisation == SCHOOL
        assert case.sharing_consent(SCHOOL, case.recorded_at) is not None
