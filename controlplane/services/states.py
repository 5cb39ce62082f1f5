"""A service's life: provisioning → running ⇄ stopped → deleting → deleted; failed from any
step, with retry. Every transition is checked against the table and audited."""
from __future__ import annotations

from controlplane.audit import trail as audit
from controlplane.core.models import Account, Service, utcnow
from controlplane.core.transitions import move

SERVICE_TRANSITIONS: dict[str, set[str]] = {
    "provisioning": {"running", "failed", "deleting"},
    "running": {"stopped", "deleting", "failed", "provisioning"},
    "stopped": {"running", "deleting", "failed", "provisioning"},
    "failed": {"provisioning", "running", "stopped", "deleting"},
    "deleting": {"deleted", "failed"},
    "deleted": set(),
}

# Which user actions are offered in which service state.
SERVICE_ACTIONS: dict[str, set[str]] = {
    "running": {"stop", "delete", "resize"},
    "stopped": {"start", "delete", "resize"},
    "failed": {"retry", "delete"},
    "provisioning": set(),
    "deleting": set(),
    "deleted": set(),
}

SERVICE_FIELDS = ("status", "hostname", "name", "size", "pending_action", "error")


def set_service_status(svc: Service, new: str, *, actor: Account | None = None,
                       action: str | None = None, **changes) -> None:
    before = audit.snapshot(svc, SERVICE_FIELDS)
    if new != svc.status:
        move(svc, new, SERVICE_TRANSITIONS)
        svc.status_changed_at = utcnow()
    for key, value in changes.items():
        setattr(svc, key, value)
    audit.record(action or f"service.{new}", svc, actor=actor, before=before,
                 after=audit.snapshot(svc, SERVICE_FIELDS))
