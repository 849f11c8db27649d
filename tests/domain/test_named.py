"""Which people and organisations a case statement names, for what an evidence bundle
discloses: the fields that hold their ids, never ids quoted in free text."""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

import msgspec
import orjson

from domain.bodies import BODIES
from domain.named import PEOPLE_FIELDS, named
from ledger.statement import UUID_PATTERN, read_header

# Ids a body holds that name things of the case, not people.
THINGS = {"decision", "proposal", "action", "revisits"}


def holds_ids(kind: Any) -> bool:
    """Whether a field's type is a UUID, an optional one, or a list of them."""
    if get_origin(kind) is Annotated:
        kind, *meta = get_args(kind)
        patterns = [m.pattern for m in meta if isinstance(m, msgspec.Meta)]
        return UUID_PATTERN in patterns or any(holds_ids(a) for a in get_args(kind))
    return any(holds_ids(arg) for arg in get_args(kind))


def test_every_id_field_of_every_body_is_a_person_or_a_thing_of_the_case() -> None:
    id_fields = {
        field.name
        for body in BODIES.values()
        for field in msgspec.structs.fields(body)
        if holds_ids(field.type)
    }

    assert id_fields == set(PEOPLE_FIELDS) | THINGS


def header(kind: str, body: dict[str, Any]) -> Any:
    statement = {
        "ledger": "clinic.example/accord",
        "id": "00000000-0000-4000-8000-000000000001",
        "stream": "00000000-0000-4000-8000-000000000002",
        "kind": kind,
        "by": "00000000-0000-4000-8000-000000000003",
        "kid": "k" * 43,
        "at": "2026-01-01T00:00:00Z",
        "body": body,
    }
    return read_header(orjson.dumps(statement))


def test_ids_in_free_text_are_not_named_but_ids_in_person_fields_are() -> None:
    child, lead, other = (f"00000000-0000-4000-8000-00000000001{n}" for n in range(3))
    decision = "00000000-0000-4000-8000-000000000020"

    opened = header("case.opened", {"child": child, "title": other, "lead": lead})
    dissent = header("dissent.recorded", {"decision": decision, "reasons": other})
    required = {"decision": decision, "question": other, "required": [lead, child]}

    assert named(opened) == [child, lead]
    assert named(dissent) == []
    assert named(header("decision.opened", required)) == [lead, child]


def test_organisations_are_named_by_membership_sharing_consent_and_a_share_under_consent() -> None:
    school, person, other = (f"00000000-0000-4000-8000-00000000003{n}" for n in range(3))
    consent = "0" * 64
    sharing = {
        "type": "sharing",
        "organisation": school,
        "purpose": other,
        "data_kinds": ["action"],
        "until": "2027-01-01",
    }
    joined = {"person": person, "role": "external_partner", "organisation": school}
    under_consent = {
        "recipient": school,
        "purpose": other,
        "what": other,
        "basis": "consent",
        "consent": consent,
    }
    safeguarding = under_consent | {"basis": "safeguarding", "justification": other}
    del safeguarding["consent"]

    assert named(header("participant.joined", joined)) == [person, school]
    assert named(header("consent.given", {"scope": sharing, "basis": other})) == [school]
    assert named(header("information.shared", under_consent)) == [school]
    assert named(header("information.shared", safeguarding)) == []
