"""The decision record: the ledger whose non-directory streams are cases, guarded by the rules."""

from __future__ import annotations

from uuid import UUID

from domain.case import Case
from domain.rules import admit
from ledger.directory import Directory
from ledger.keys import Ed25519PublicKey
from ledger.ledger import Ledger
from ledger.statement import Submission
from ledger.stream import Stream
from ledger.text import check_texts


class DecisionRecord(Ledger):
    """A ledger of cases: every case statement is checked against R1-R14 before it is stored."""

    stream_class = Case

    def case(self, case_id: UUID | str) -> Case:
        """A snapshot of a case's current state."""
        state = self.stream(case_id if isinstance(case_id, UUID) else UUID(case_id))
        assert isinstance(state, Case)
        return state

    def _admit(
        self,
        stream: Stream,
        submission: Submission,
        signer: Ed25519PublicKey,
        directory: Directory,
        recorded_at: str,
    ) -> None:
        if isinstance(stream, Case):
            admit(stream, submission.statement, directory, recorded_at, new=True)
            # Not one of the rules: stored entries, which the rules replay, are not held to it.
            check_texts(submission.statement.body)
        else:
            super()._admit(stream, submission, signer, directory, recorded_at)
