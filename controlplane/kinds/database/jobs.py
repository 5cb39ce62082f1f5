"""Worker jobs specific to databases."""
from __future__ import annotations

import logging

from sqlalchemy import select

from controlplane.audit import trail as audit
from controlplane.kinds import registry as kinds
from controlplane.core.extensions import db
from controlplane.services.jobs import _context, short_error
from controlplane.requests.lifecycle import enqueue_action
from controlplane.core.models import Service

log = logging.getLogger(__name__)


def rotate_password(service_id: int) -> str:
    """New password for the database user, then re-provision the applications bound to it."""
    with _context():
        svc = db.session.get(Service, service_id)
        if svc is None or svc.status != "running":
            return "skipped"
        try:
            kinds.get(svc.kind).rotate(svc)
        except Exception as exc:  # noqa: BLE001 - recorded; the old password still works
            db.session.rollback()
            log.exception("event=rotate.failed service=%s", service_id)
            svc = db.session.get(Service, service_id)
            audit.record("service.rotation_failed", svc, after={"error": short_error(exc)})
            svc.error = f"password change failed: {short_error(exc)}"
            db.session.commit()
            return "failed"
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
