"""Group commit over HTTP: concurrent POSTs are queued and appended together, and each is
answered as if it had been posted alone."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import orjson

from api.client import AccordError, AsyncClient, Identity, Rejected, Submitted
from api.tokens import Scope
from ledger import keys
from ledger.statement import parse_submission
from tests.api.conftest import ORIGIN, Served

TASKS = 20
PER_TASK = 10
CASES = 5
MALFORMED = b'{"statement": {"ledger": '


def test_concurrent_posts_are_grouped_and_each_answered_as_if_alone(served: Served) -> None:
    lead = served.person("Dr Lee", "professional", profession="paediatrician")
    child = served.person("Kai", "child", born="2017-01-01")
    stranger = Identity(ORIGIN, lead.person, keys.generate())  # a key nobody bound
    cases = [str(uuid.uuid4()) for _ in range(CASES)]
    never_opened = str(uuid.uuid4())
    receipts: dict[str, list[int]] = defaultdict(list)
    with served.client() as client:
        for case in cases:
            body = {"child": child.person, "title": "Grouped", "lead": lead.person}
            receipts[case].append(client.submit(lead.sign(case, "case.opened", body)).receipt.seq)

    def decision(case: str, who: Identity = lead) -> bytes:
        body = {"decision": str(uuid.uuid4()), "question": "Which?", "required": [lead.person]}
        return who.sign(case, "decision.opened", body)

    def forged(case: str) -> bytes:
        envelope = orjson.loads(decision(case))
        envelope["statement"]["body"]["question"] = "Changed after signing?"
        return orjson.dumps(envelope)

    # Each task posts nine good statements, spread over all the cases (so several tasks write
    # to one case at once), then one of: a repeat of its first, a forged signature, a key
    # nobody bound, malformed JSON, a statement for a case that was never opened.
    plans: list[list[tuple[str, bytes]]] = []
    for task in range(TASKS):
        plan = [("created", decision(cases[(task + k) % CASES])) for k in range(PER_TASK - 1)]
        last_case = cases[task % CASES]
        plan.append(
            [
                ("repeat", plan[0][1]),
                ("signature_invalid", forged(last_case)),
                ("unknown_key", decision(last_case, stranger)),
                ("malformed", MALFORMED),
                ("not_a_member", decision(never_opened)),
            ][task % 5]
        )
        plans.append(plan)
    appends: list[None] = []  # one call for each transaction that appends
    served.record.on_append(lambda: appends.append(None))

    async def post(plan: list[tuple[str, bytes]]) -> list[Submitted | AccordError]:
        answers: list[Submitted | AccordError] = []
        async with AsyncClient(served.url) as client:
            for _, data in plan:
                try:
                    answers.append(await client.submit(data))
                except AccordError as exc:
                    answers.append(exc)
        return answers

    async def post_all() -> list[list[Submitted | AccordError]]:
        return await asyncio.gather(*(post(plan) for plan in plans))

    results = asyncio.run(post_all())
    appends_seen = len(appends)

    created = 0
    for plan, answers in zip(plans, results, strict=True):
        first = answers[0]
        for (expected, data), answer in zip(plan, answers, strict=True):
            if expected == "created":
                assert isinstance(answer, Submitted), answer
                assert answer.created  # 201
                receipt = answer.receipt
                entry = served.record.entry(uuid.UUID(receipt.stream), receipt.seq)
                assert entry.hash == receipt.hash
                assert entry.statement_bytes == parse_submission(data).statement_bytes
                receipts[receipt.stream].append(receipt.seq)
                created += 1
            elif expected == "repeat":
                assert isinstance(answer, Submitted), answer
                assert isinstance(first, Submitted)
                assert (answer.created, answer.receipt) == (False, first.receipt)  # 200
            else:
                assert isinstance(answer, Rejected), answer
                assert answer.code == expected
    assert created == TASKS * (PER_TASK - 1)
    # Every case's entries are numbered 1..n with no gap and no repeat, and its chain checks.
    for case in cases:
        seqs = sorted(receipts[case])
        assert seqs == list(range(1, len(seqs) + 1))
        assert served.record.check_stream(uuid.UUID(case)) == len(seqs)
    assert served.record.stream(uuid.UUID(never_opened)).version == 0
    # The writer shared transactions: fewer appends than statements it created. (This is seen
    # in the server's process; nothing in the HTTP answers tells a group from single appends.)
    assert appends_seen < created
    # And the projections hold every decision of every case.
    with served.client(served.token(served.reviewer(), Scope.REVIEWER)) as reader:
        for case in cases:
            assert len(reader.plan(case).decisions) == len(receipts[case]) - 1
