"""Domain rejections: each names its rule (R1-R14) and says in one sentence what is wrong."""

from __future__ import annotations

from ledger.errors import LedgerError


class RuleViolated(LedgerError):
    """A statement breaks one of the rules; `rule` is its id, `detail` a plain sentence."""

    code = "rule_violated"

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


class NotAMember(RuleViolated):
    """R1: the author is not an active member of the case (or may never author case entries)."""

    code = "not_a_member"

    def __init__(self, detail: str) -> None:
        super().__init__("R1", detail)


class RoleNotPermitted(RuleViolated):
    """R3/R4/R11: the author's role may not say this, or not on that person's behalf."""

    code = "not_permitted"


class StaleReference(RuleViolated):
    """R5: the statement refers to a proposal that has since been withdrawn or replaced."""

    code = "stale_reference"

    def __init__(self, detail: str) -> None:
        super().__init__("R5", detail)
