"""How the rules word a refusal: each person named once, in a sentence a person reads."""

from __future__ import annotations

from tests.conftest import World
from tests.domain.test_rules import NAMES, Attempt, assert_explains, build_scene


def test_r11_names_the_lead_once_when_the_lead_wrote_the_entry(record: World) -> None:
    scene = build_scene(record)
    by_lead = scene.options["clinic"].hash  # proposed by the case lead

    error = scene.reject(Attempt("grace", "entry.corrected", scene.correction(by_lead)))

    assert_explains(error, "not_permitted", "R11", (NAMES["lead"],))
    assert error.detail.count(NAMES["lead"]) == 1
    assert (
        error.detail
        == f"Only {NAMES['lead']}, who wrote this entry and leads the case, can correct it."
    )


def test_r11_names_the_author_and_the_lead_when_they_differ(record: World) -> None:
    scene = build_scene(record)
    by_sam = scene.options["home"].hash

    error = scene.reject(Attempt("grace", "entry.corrected", scene.correction(by_sam)))

    assert_explains(error, "not_permitted", "R11", (NAMES["sam"], NAMES["lead"]))
    assert error.detail.count(NAMES["lead"]) == 1
