"""Read models rebuilt from the ledger's log, each with its own tracking position."""
