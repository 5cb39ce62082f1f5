"""Docker's own registry (CNCF distribution 2.8): its configuration, the token-signing key and
certificate it trusts, and a small client for its HTTP API (no Flask here)."""
