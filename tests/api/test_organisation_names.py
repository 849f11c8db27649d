"""Organisations are named by their registered id in new statements; a ledger recorded before
organisations were registered, whose statements name them by name, still folds, verifies,
exports and rebuilds."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from domain.errors import RuleViolated
from domain.record import DecisionRecord
from tests.api.test_text import assert_verifies_exports_and_rebuilds, older_ledger
from tests.conftest import fingerprint, open_world
from tests.domain.test_text import Opened

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
    with older_ledger(tmp_path, store_url) as (home, opened):
        world = opened.world
        teacher = world.person("Ms Hale", "professional", profession="teacher")
        joined = {"person": teacher.person, "role": "external_partner", "organisation": SCHOOL}
        opened.say(opened.lead, "participant.joined", joined)
        opened.say(opened.grace, "consent.given", sharing(SCHOOL))
        consent = world.ledger.stream(uuid.UUID(opened.case))
        share = {
            "recipient": SCHOOL,
            "purpose": "Exercise plan at school",
            "what": "The home exercise programme",
            "basis": "consent",
            "consent": consent.head,
        }
        opened.say(opened.lead, "information.shared", share)

    assert_verifies_exports_and_rebuilds(home, store_url, opened.case, tmp_path, capsys)
    with home.open_ledger() as record:
        case = record.case(opened.case)
        partner = case.member(teacher.person)
        assert partner is not None
        assert partner.organisation == SCHOOL
        assert case.sharing_consent(SCHOOL, case.recorded_at) is not None
