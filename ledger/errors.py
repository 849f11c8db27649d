"""The ledger's exception hierarchy: every rejection carries a stable machine code."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose; `code` is stable and machine-readable."""

    code = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Malformed(LedgerError):
    """The input is not well-formed JSON, has wrong types, or is not canonicalisable."""

    code = "malformed"


class TooLarge(LedgerError):
    """The submission exceeds the size limit."""

    code = "too_large"


class SignatureInvalid(LedgerError):
    """The signature does not verify over the canonical statement bytes."""

    code = "signature_invalid"


class UnknownKey(LedgerError):
    """The key id is not bound to the statement's author in the directory."""

    code = "unknown_key"


class KeyRevoked(LedgerError):
    """The key was revoked (or compromised) before the entry would be recorded."""

    code = "key_revoked"


class WrongLedger(LedgerError):
    """The statement names another ledger's origin."""

    code = "wrong_ledger"


class StatementConflict(LedgerError):
    """A statement with the same id but different bytes was already recorded."""

    code = "statement_conflict"


class NotPermitted(LedgerError):
    """The author may not make this statement in this stream."""

    code = "not_permitted"


class Busy(LedgerError):
    """The stream stayed contended for longer than the retry budget allows."""

    code = "busy"


class UnknownStream(LedgerError):
    """The id names something kept beside the streams (a token, a recorded read), not a stream."""

    code = "unknown_stream"


class Unavailable(LedgerError):
    """The store failed while a statement was being recorded; it was not recorded."""

    code = "unavailable"


class IntegrityViolation(LedgerError):
    """Stored data does not check out: a changed, missing or reordered entry."""

    code = "integrity_violated"

    def __init__(self, stream: str, seq: int, detail: str) -> None:
        super().__init__(f"stream {stream} seq {seq}: {detail}")
        self.stream = stream
        self.seq = seq
        self.problem = detail  # what is wrong, without the where
