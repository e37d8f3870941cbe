"""The consent ledger and subject settings: append-only events, current state as a fold."""
