"""A follower killed with SIGKILL mid-batch resumes exactly where its last commit left it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ledger import keys
from tests.domain.conftest import play_worked_case
from tests.projections.conftest import Projected, dump

FOLLOW = """
import sys
from domain.record import DecisionRecord
from ledger import keys
from projections.database import Database
from projections.follower import Follower
store, origin, authority = sys.argv[1:4]
ledger = DecisionRecord(store, origin, keys.public_key_from_b64(authority))
follower = Follower(ledger, Database(ledger.store), batch_size=3)
while True:  # follow slowly, batch after batch, until killed
    follower.run_once()
"""


def spawn(code: str, projected: Projected) -> subprocess.Popen[str]:
    """Run `code` in a new Python process on the same ledger (argv: store, origin, authority)."""
    ledger, root = projected.world.ledger, Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            ledger.store.url,
            ledger.origin,
            keys.public_key_b64(projected.world.authority_key),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_follower_killed_mid_batch_resumes_with_nothing_missed_or_doubled(
    projected: Projected,
) -> None:
    world = projected.world
    for _ in range(8):
        play_worked_case(world)
    total = world.ledger.size()
    child = spawn(FOLLOW, projected)
    try:
        deadline = time.monotonic() + 60
        while projected.follower.tracking()["audit"][1] < total // 3:
            assert child.poll() is None, "the follower process died by itself"
            assert time.monotonic() < deadline, "the follower made no progress"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done = projected.follower.tracking()["audit"][1]
    assert 0 < done < total, "killed before it finished"

    projected.follower.catch_up()
    resumed = dump(projected.database)
    projected.follower.rebuild()

    assert dump(projected.database) == resumed
    assert len(resumed["projection_audit"]) == total


LEAD = """
import sys, time
from domain.record import DecisionRecord
from ledger import keys
from projections.database import Database
from projections.follower import Follower
store, origin, authority = sys.argv[1:4]
ledger = DecisionRecord(store, origin, keys.public_key_from_b64(authority))
follower = Follower(ledger, Database(ledger.store))
assert follower.try_lead()
print("leading", flush=True)
time.sleep(600)
"""


def test_when_the_leading_process_dies_another_takes_over(projected: Projected) -> None:
    leader = spawn(LEAD, projected)
    try:
        assert leader.stdout is not None and leader.stdout.readline().strip() == "leading"
        assert not projected.follower.try_lead(), "two processes would follow at once"
    finally:
        leader.send_signal(signal.SIGKILL)
        leader.wait()

    deadline = time.monotonic() + 30
    while not projected.follower.try_lead():
        assert time.monotonic() < deadline, "the lock was not freed when its holder died"
        time.sleep(0.1)
    projected.follower.resign()
