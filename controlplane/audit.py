"""Append audit events: every change says who, what, on which object, before and after."""
from __future__ import annotations

from typing import Any

from .extensions import db
from .models import Account, AuditEvent

SYSTEM = "system"


def snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """Plain, JSON-safe copy of the fields that matter for the record."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def record(action: str, target: Any, *, actor: Account | None = None,
           before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """Add an event to the session; the caller's commit makes it durable with the change itself."""
    if getattr(target, "id", None) is None:
        db.session.flush()
    event = AuditEvent(
        actor=actor.username if actor is not None else SYSTEM,
        actor_id=actor.id if actor is not None else None,
        action=action,
        target_type=target.__tablename__,
        target_id=target.id,
        institution_id=getattr(target, "institution_id", None) if not hasattr(target, "acronym") else target.id,
        before=before,
        after=after,
    )
    db.session.add(event)
    return event
