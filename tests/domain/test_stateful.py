"""Random sequences of statements from random people: the rules hold in every reachable state."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, date, datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from domain.case import Case
from domain.record import DecisionRecord
from ledger.entry import Entry
from ledger.errors import LedgerError
from tests.conftest import (
    PG_DSN,
    World,
    create_schema,
    drop_schema,
    fingerprint,
    open_world,
)

# handle -> (kind, role in the case or None, parental responsibility)
PEOPLE: dict[str, tuple[str, str | None, bool]] = {
    "lead": ("professional", None, False),
    "child": ("child", None, False),
    "mum": ("adult", "parent", True),
    "uncle": ("adult", "carer", False),
    "advocate": ("professional", "advocate", False),
    "school": ("professional", "external_partner", False),
    "stranger": ("adult", None, False),
}
actors = st.sampled_from(sorted(PEOPLE))


def likely(*handles: str) -> st.SearchStrategy[str]:
    """Mostly the people who may make this statement, sometimes anyone: both paths get tried."""
    return st.sampled_from([*handles * 4, *sorted(PEOPLE)])


class CaseMachine(RuleBasedStateMachine):
    """Drives one case through the real signed write path on a real store."""

    store_url: str = ""

    decisions = Bundle("decisions")
    proposals = Bundle("proposals")
    consents = Bundle("consents")
    entries = Bundle("entries")

    def __init__(self) -> None:
        super().__init__()
        self.world: World = open_world(self.store_url_factory(), DecisionRecord)
        self.case = str(uuid.uuid4())
        self.opened = 0

    def store_url_factory(self) -> str:
        raise NotImplementedError

    def teardown(self) -> None:
        self.world.ledger.close()

    # -- submitting -------------------------------------------------------------------------

    def say(self, who: str, kind: str, body: dict[str, Any], for_: str | None = None) -> Any:
        """Submit; return the receipt, or None when refused (and then nothing may change)."""
        author = self.world.people[who]
        before = fingerprint(self.world.ledger)
        try:
            return self.world.ledger.submit(
                author.submission(self.case, kind, body, for_=for_)
            ).receipt
        except LedgerError:
            assert fingerprint(self.world.ledger) == before, f"a refused {kind} left a trace"
            return None

    def person(self, who: str) -> str:
        return self.world.people[who].person

    @initialize()
    def open_case(self) -> None:
        born = date(datetime.now(UTC).year - 9, 1, 1).isoformat()
        for handle, (kind, _, _) in PEOPLE.items():
            self.world.person(handle, kind, born=born if kind == "child" else None)
        assert self.say(
            "lead",
            "case.opened",
            {"child": self.person("child"), "title": "t", "lead": self.person("lead")},
        )
        for handle, (_, role, responsibility) in PEOPLE.items():
            if role is not None:
                body: dict[str, Any] = {"person": self.person(handle), "role": role}
                if responsibility:
                    body["parental_responsibility"] = True
                if role == "external_partner":
                    body["organisation"] = self.world.organisation("School")
                assert self.say("lead", "participant.joined", body)

    # -- statements -------------------------------------------------------------------------

    @precondition(lambda self: self.opened < 2)  # few decisions, so each gets far
    @rule(
        target=decisions,
        who=likely("lead", "mum"),
        required=st.sets(likely("lead", "mum"), min_size=1, max_size=2),
    )
    def open_decision(self, who: str, required: set[str]) -> Any:
        decision = str(uuid.uuid4())
        body = {
            "decision": decision,
            "question": "What next?",
            "required": sorted(self.person(h) for h in required),
        }
        if not self.say(who, "decision.opened", body):
            return multiple()
        self.opened += 1
        return decision

    @rule(target=proposals, who=likely("lead", "mum"), decision=decisions, do_nothing=st.booleans())
    def propose(self, who: str, decision: Any, do_nothing: bool) -> Any:
        proposal = str(uuid.uuid4())
        body = {"decision": decision, "proposal": proposal, "title": "p", "do_nothing": do_nothing}
        receipt = self.say(who, "proposal.made", body)
        return (decision, proposal, receipt.hash) if receipt else multiple()

    @rule(who=likely("lead", "mum"), proposal=proposals)
    def withdraw(self, who: str, proposal: tuple[str, str, str]) -> None:
        decision, proposal_id, _ = proposal
        self.say(who, "proposal.withdrawn", {"decision": decision, "proposal": proposal_id})

    @rule(
        target=entries,
        who=actors,
        proposal=proposals,
        stance=st.sampled_from(["support", "oppose"]),
    )
    def opinion(self, who: str, proposal: tuple[str, str, str], stance: str) -> Any:
        decision, proposal_id, proposal_hash = proposal
        body = {
            "decision": decision,
            "proposal": proposal_id,
            "proposal_hash": proposal_hash,
            "stance": stance,
        }
        receipt = self.say(who, "opinion.given", body)
        return receipt.hash if receipt else multiple()

    @rule(who=likely("advocate", "child"), decision=decisions, odd=st.integers(0, 4))
    def child_view(self, who: str, decision: Any, odd: int) -> None:
        # Usually the right way round (the child for themself, others on their behalf).
        on_behalf = (who != "child") != (odd == 0)
        body = {"decision": decision, "view": "I like swimming.", "method": "pictures"}
        self.say(who, "child_view.recorded", body, for_=self.person("child") if on_behalf else None)

    @rule(who=likely("advocate", "lead"), decision=decisions)
    def not_obtained(self, who: str, decision: Any) -> None:
        self.say(who, "child_view.not_obtained", {"decision": decision, "reason": "Asleep."})

    @rule(who=likely("lead"), decision=decisions, competent=st.booleans())
    def capacity(self, who: str, decision: Any, competent: bool) -> None:
        body = {
            "decision": decision,
            "person": self.person("child"),
            "competent": competent,
            "reasoning": "Assessed.",
        }
        self.say(who, "capacity.assessed", body)

    @rule(target=consents, who=likely("mum"), proposal=proposals)
    def consent(self, who: str, proposal: tuple[str, str, str]) -> Any:
        decision, _, proposal_hash = proposal
        body = {
            "decision": decision,
            "basis": "b",
            "scope": {"type": "treatment", "proposal_hash": proposal_hash},
        }
        receipt = self.say(who, "consent.given", body)
        return receipt.hash if receipt else multiple()

    @rule(who=likely("mum"), consent=consumes(consents))
    def withdraw_consent(self, who: str, consent: str) -> None:
        self.say(who, "consent.withdrawn", {"consent": consent})

    @rule(who=likely("lead", "mum"), proposal=proposals)
    def agree(self, who: str, proposal: tuple[str, str, str]) -> None:
        decision, proposal_id, proposal_hash = proposal
        body = {"decision": decision, "proposal": proposal_id, "proposal_hash": proposal_hash}
        self.say(who, "agreement.given", body)

    @rule(proposal=proposals)
    def everyone_required_agrees(self, proposal: tuple[str, str, str]) -> None:
        """Each required participant agrees in turn: the only realistic way to reach R9."""
        decision, proposal_id, proposal_hash = proposal
        state = self.world.ledger.stream(uuid.UUID(self.case))
        assert isinstance(state, Case)
        body = {"decision": decision, "proposal": proposal_id, "proposal_hash": proposal_hash}
        by_person = {author.person: handle for handle, author in self.world.people.items()}
        for person in state.decisions[decision].required:
            self.say(by_person[person], "agreement.given", body)

    @rule(who=likely("lead"), decision=decisions)
    def defer(self, who: str, decision: Any) -> None:
        body = {"decision": decision, "reason": "Wait.", "until": "2030-01-01"}
        self.say(who, "decision.deferred", body)

    @rule(who=actors, entry=entries)
    def correct(self, who: str, entry: str) -> None:
        self.say(who, "entry.corrected", {"entry": entry, "correction": "c", "reason": "r"})

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def replaying_the_stored_entries_gives_an_equal_case(self) -> None:
        live = self.world.ledger.stream(uuid.UUID(self.case))
        cold = self.world.reopen().stream(uuid.UUID(self.case))
        assert _dump(live) == _dump(cold)

    @invariant()
    def every_agreed_decision_met_r6_to_r9_when_it_was_agreed(self) -> None:
        stream = uuid.UUID(self.case)
        case = self.world.ledger.stream(stream)
        assert isinstance(case, Case)
        stored = list(self.world.ledger.entries(stream))
        for decision in case.decisions.values():
            event(f"decision {case.status(decision)}")
            if decision.agreed_at is not None:
                _check_agreement(stored, decision.id, decision.agreed_hash, decision.agreed_at)


def _dump(state: Any) -> Any:
    return msgspec.to_builtins({k: v for k, v in vars(state).items()}, str_keys=True)


def _check_agreement(stored: list[Entry], decision: str, agreed: Any, agreed_at: str) -> None:
    """Recompute R6, R7 and R9 from the raw entries up to the completing agreement."""
    completing = [
        e
        for e in stored
        if e.statement.kind == "agreement.given"
        and e.recorded_at == agreed_at
        and e.statement.body["decision"] == decision
    ]
    assert completing, "the agreed time is the recorded time of an agreement"
    upto = [e for e in stored if e.seq <= completing[-1].seq]
    about = [e for e in upto if e.statement.body.get("decision") == decision]
    opened = next(e for e in about if e.statement.kind == "decision.opened")
    heard = [e for e in about if e.statement.kind.startswith("child_view.")]
    made = {e.statement.body["proposal"] for e in about if e.statement.kind == "proposal.made"}
    withdrawn = {
        e.statement.body["proposal"] for e in about if e.statement.kind == "proposal.withdrawn"
    }
    latest: dict[str, str] = {}
    for e in about:
        if e.statement.kind == "agreement.given":
            latest[e.statement.by] = e.statement.body["proposal_hash"]
    given = {
        e.hash
        for e in upto
        if e.statement.kind == "consent.given"
        and e.statement.body["scope"].get("proposal_hash") == agreed
    }
    taken_back = {
        e.statement.body["consent"] for e in upto if e.statement.kind == "consent.withdrawn"
    }

    assert heard, "R6: the child was heard"
    assert len(made - withdrawn) >= 2, "R7: at least two options"
    assert all(latest.get(p) == agreed for p in opened.statement.body["required"]), "R9"
    assert given - taken_back, "R9: active treatment consent"


class SQLiteCase(CaseMachine):
    def store_url_factory(self) -> str:
        self.folder = tempfile.TemporaryDirectory()
        return f"sqlite:///{self.folder.name}/ledger.db"

    def teardown(self) -> None:
        super().teardown()
        self.folder.cleanup()


class PostgresCase(CaseMachine):
    def store_url_factory(self) -> str:
        self.schema = create_schema()
        return f"{PG_DSN}?schema={self.schema}"

    def teardown(self) -> None:
        super().teardown()
        drop_schema(self.schema)


def machine_test(machine: type[CaseMachine], examples: int, steps: int) -> Any:
    """The test case that runs `machine`; PostgreSQL ones are gated like the `store_url` ones."""
    case = machine.TestCase
    case.settings = settings(
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        max_examples=examples,
        stateful_step_count=steps,
    )
    setattr(case, "needs_postgres", issubclass(machine, PostgresCase))  # noqa: B010
    return case


TestOnSQLite = machine_test(SQLiteCase, examples=40, steps=60)
TestOnPostgres = machine_test(PostgresCase, examples=6, steps=60)
