"""What the ledger answers for an accepted statement, in a module of its own so that a client
can read receipts without importing the ledger application."""

from __future__ import annotations

import msgspec


class Receipt(msgspec.Struct, frozen=True):
    """What the ledger answers for an accepted statement."""

    stream: str
    seq: int
    hash: str
    recorded_at: str
