"""Which people a case statement names, for what an evidence bundle discloses: the fields that
hold person ids, never ids quoted in free text."""

from __future__ import annotations

from typing import Annotated, Any, get_args, get_origin

import msgspec
import orjson

from domain.bodies import BODIES
from domain.named import PEOPLE_FIELDS, named_people
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

    assert named_people(opened) == [child, lead]
    assert named_people(dissent) == []
    assert named_people(header("decision.opened", required)) == [lead, child]
