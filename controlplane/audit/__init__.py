"""The tamper-evident audit trail: recording events, sealing the chain, verifying it."""
