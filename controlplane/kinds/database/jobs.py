"""Database jobs: a new password, then the applications bound to it re-provisioned."""
from __future__ import annotations

from sqlalchemy import select

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import Service
from controlplane.kinds import registry as kinds
from controlplane.kinds.base import WithCredentials
from controlplane.services.actions import enqueue_action
from controlplane.worker import queue
from controlplane.worker.runner import job, short_error


def enqueue_rotation(svc: Service):
    return queue.enqueue_unique(rotate_password, svc.id, job_id=f"service-{svc.id}-rotate")


def _rotation_failed(exc: Exception, service_id: int) -> None:
    """Recorded; the old password still works."""
    svc = db.session.get(Service, service_id)
    audit.record("service.rotation_failed", svc, after={"error": short_error(exc)})
    svc.error = f"password change failed: {short_error(exc)}"


@job(on_failure=_rotation_failed)
def rotate_password(service_id: int) -> str:
    """New password for the database user, then re-provision the applications bound to it."""
    svc = db.session.get(Service, service_id)
    if svc is None or svc.status != "running":
        return "skipped"
    kind = kinds.get(svc.kind)
    if not isinstance(kind, WithCredentials):
        raise RuntimeError(f"a {svc.kind} has no password to rotate")
    kind.rotate(svc)
    audit.record("service.password_rotated", svc)
    db.session.commit()
    bound = [app for app in db.session.scalars(select(Service).where(
        Service.kind == "application", Service.status == "running"))
        if (app.params or {}).get("database_id") == svc.id]
    for app in bound:
        app.pending_action = "provision"
        db.session.commit()
        enqueue_action(app, "provision")
    return "done"
