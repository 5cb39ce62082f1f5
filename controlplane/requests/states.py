"""A request's life: submitted → approved / rejected → provisioning → active, or failed with
the reason; cancelled by its author while still submitted. Every transition is audited."""
from __future__ import annotations

from controlplane.audit import trail as audit
from controlplane.core.models import Account, Request
from controlplane.core.transitions import move

REQUEST_TRANSITIONS: dict[str, set[str]] = {
    "submitted": {"approved", "rejected", "cancelled"},
    "approved": {"provisioning", "failed", "active"},
    "provisioning": {"active", "failed"},
    "failed": {"provisioning", "active"},
    "active": set(),
    "rejected": set(),
    "cancelled": set(),
}

REQUEST_FIELDS = ("status", "hostname", "name", "size", "reason", "error")


def set_request_status(req: Request, new: str, *, actor: Account | None = None,
                       action: str | None = None, **changes) -> None:
    before = audit.snapshot(req, REQUEST_FIELDS)
    move(req, new, REQUEST_TRANSITIONS)
    for key, value in changes.items():
        setattr(req, key, value)
    audit.record(action or f"request.{new}", req, actor=actor, before=before,
                 after=audit.snapshot(req, REQUEST_FIELDS))
