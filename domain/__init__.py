"""The shared-decision model: cases, statement bodies and rules, built on the ledger's streams."""
