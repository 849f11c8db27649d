"""Generic signed, tamper-evident, event-sourced log: knows nothing of children or decisions."""
