"""The tamper-evident audit log (clause S2): hash chain, signed checkpoints, verification."""
