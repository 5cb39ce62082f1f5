"""The periodic sealing of the audit trail."""
from __future__ import annotations

from controlplane.audit import trail
from controlplane.worker.runner import job


@job()
def seal_audit() -> int:
    """Chain the audit events written since the last run."""
    return trail.seal()
