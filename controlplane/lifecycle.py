"""Request and service state machines; every transition is checked and audited."""
from __future__ import annotations

import logging

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import audit, tasks
from .extensions import db
from .models import REQUEST_OPEN_STATES, Account, Request, Service, utcnow

log = logging.getLogger(__name__)

REQUEST_TRANSITIONS: dict[str, set[str]] = {
    "submitted": {"approved", "rejected", "cancelled"},
    "approved": {"provisioning", "failed"},
    "provisioning": {"active", "failed"},
    "failed": {"provisioning", "active"},
    "active": set(),
    "rejected": set(),
    "cancelled": set(),
}

SERVICE_TRANSITIONS: dict[str, set[str]] = {
    "provisioning": {"running", "failed", "deleting"},
    "running": {"stopped", "deleting", "failed"},
    "stopped": {"running", "deleting", "failed"},
    "failed": {"provisioning", "running", "stopped", "deleting"},
    "deleting": {"deleted", "failed"},
    "deleted": set(),
}

# Which user actions are offered in which service state.
SERVICE_ACTIONS: dict[str, set[str]] = {
    "running": {"stop", "delete"},
    "stopped": {"start", "delete"},
    "failed": {"retry", "delete"},
    "provisioning": set(),
    "deleting": set(),
    "deleted": set(),
}

REQUEST_FIELDS = ("status", "hostname", "name", "size", "reason", "error")
SERVICE_FIELDS = ("status", "hostname", "name", "size", "pending_action", "error")


class LifecycleError(Exception):
    """A user asked for something the current state does not allow; the message says why."""

    def __init__(self, message, field: str | None = None):
        super().__init__(str(message))
        self.message = message
        self.field = field


def _move(obj, new: str, table: dict[str, set[str]]) -> None:
    if new not in table[obj.status]:
        raise LifecycleError(_l("This action is not possible while the status is “%(status)s”.",
                                status=obj.status))
    obj.status = new
    if isinstance(obj, Service):
        obj.status_changed_at = utcnow()


def set_request_status(req: Request, new: str, *, actor: Account | None = None,
                       action: str | None = None, **changes) -> None:
    before = audit.snapshot(req, REQUEST_FIELDS)
    _move(req, new, REQUEST_TRANSITIONS)
    for key, value in changes.items():
        setattr(req, key, value)
    audit.record(action or f"request.{new}", req, actor=actor, before=before,
                 after=audit.snapshot(req, REQUEST_FIELDS))


def set_service_status(svc: Service, new: str, *, actor: Account | None = None,
                       action: str | None = None, **changes) -> None:
    before = audit.snapshot(svc, SERVICE_FIELDS)
    if new != svc.status:
        _move(svc, new, SERVICE_TRANSITIONS)
    for key, value in changes.items():
        setattr(svc, key, value)
    audit.record(action or f"service.{new}", svc, actor=actor, before=before,
                 after=audit.snapshot(svc, SERVICE_FIELDS))


def hostname_taken(hostname: str) -> bool:
    live = db.session.scalar(select(Service.id).where(
        Service.hostname == hostname, Service.status != "deleted").limit(1))
    pending = db.session.scalar(select(Request.id).where(
        Request.hostname == hostname, Request.status.in_(REQUEST_OPEN_STATES)).limit(1))
    return live is not None or pending is not None


def submit_request(actor: Account, kind_name: str, data: dict) -> Request:
    """Validate and record a request of `kind_name` for the actor's institution."""
    from . import kinds

    inst = actor.institution
    if inst is None or not actor.is_focal_point:
        raise LifecycleError(_l("Only an institution's focal points can request hosting."))
    kind = kinds.get(kind_name)
    if kind is None:
        raise LifecycleError(_l("Unknown kind of service “%(kind)s”.", kind=kind_name))
    clean = kind.clean(data, inst)
    req = Request(institution_id=inst.id, author_id=actor.id, kind=kind.name,
                  hostname=clean.get("hostname"), name=clean.get("name"), size=clean["size"],
                  params=clean.get("params") or {}, status="submitted")
    db.session.add(req)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise LifecycleError(_l("%(host)s is already used or requested; choose another name.",
                                host=clean.get("hostname") or clean.get("name")),
                             field="hostname" if clean.get("hostname") else "name") from None
    audit.record("request.submitted", req, actor=actor, after=audit.snapshot(req, REQUEST_FIELDS))
    db.session.commit()
    log.info("event=request.submitted request=%s institution=%s kind=%s", req.id, inst.acronym,
             kind.name)
    return req


def submit_website(actor: Account, hostname: str, size: str) -> Request:
    return submit_request(actor, "website", {"hostname": hostname, "size": size})


def cancel_request(actor: Account, req: Request) -> None:
    if req.author_id != actor.id:
        raise LifecycleError(_l("Only the author of a request can cancel it."))
    if req.status != "submitted":
        raise LifecycleError(_l("Only a request that is still waiting for approval can be "
                                "cancelled."))
    set_request_status(req, "cancelled", actor=actor)
    db.session.commit()


def reject_request(actor: Account, req: Request, reason: str) -> None:
    reason = (reason or "").strip()
    if not reason:
        raise LifecycleError(_l("Give the reason for the rejection; the requester will see it."),
                             field="reason")
    if req.status != "submitted":
        raise LifecycleError(_l("This request was already decided."))
    set_request_status(req, "rejected", actor=actor, reason=reason, decided_by_id=actor.id,
                       decided_at=utcnow())
    db.session.commit()


def approve_request(actor: Account, req: Request) -> Service:
    """Approve, create the service row and enqueue its provisioning."""
    if req.status != "submitted":
        raise LifecycleError(_l("This request was already decided."))
    set_request_status(req, "approved", actor=actor, decided_by_id=actor.id, decided_at=utcnow())
    svc = Service(institution_id=req.institution_id, request_id=req.id, kind=req.kind,
                  hostname=req.hostname, name=req.name, size=req.size,
                  params=dict(req.params or {}), status="provisioning",
                  pending_action="provision")
    db.session.add(svc)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise LifecycleError(_l("%(host)s is already in use by another service.",
                                host=req.hostname)) from None
    audit.record("service.created", svc, actor=actor, after=audit.snapshot(svc, SERVICE_FIELDS))
    db.session.commit()
    enqueue_action(svc, "provision")
    return svc


def request_service_action(actor: Account, svc: Service, action: str) -> None:
    """stop / start / delete / retry: record the intent, then let a worker do it."""
    allowed = SERVICE_ACTIONS.get(svc.status, set())
    if action not in allowed or (svc.pending_action and svc.status != "failed"):
        raise LifecycleError(_l("This action is not possible while the status is “%(status)s”.",
                                status=svc.status))
    if action == "retry":
        action = svc.pending_action or "provision"
        if action == "provision":
            set_service_status(svc, "provisioning", actor=actor, action="service.retry", error=None)
        else:
            audit.record("service.retry", svc, actor=actor,
                         before=audit.snapshot(svc, SERVICE_FIELDS))
            svc.error = None
    elif action == "delete":
        set_service_status(svc, "deleting", actor=actor, action="service.delete_requested",
                           pending_action="delete", error=None)
    else:
        before = audit.snapshot(svc, SERVICE_FIELDS)
        svc.pending_action = action
        audit.record(f"service.{action}_requested", svc, actor=actor, before=before,
                     after=audit.snapshot(svc, SERVICE_FIELDS))
    db.session.commit()
    enqueue_action(svc, action)


def enqueue_action(svc: Service, action: str) -> None:
    """Hand the work to a worker; when the queue is down the service says so and can be retried."""
    try:
        tasks.enqueue_service_action(svc.id, action)
    except tasks.QueueUnavailable as exc:
        log.error("event=enqueue.failed service=%s action=%s error=%s", svc.id, action, exc)
        set_service_status(svc, "failed", pending_action=action,
                           error="job queue unavailable; retry when it is back")
        if svc.request is not None and svc.request.status in ("approved", "provisioning"):
            set_request_status(svc.request, "failed", error="job queue unavailable")
        db.session.commit()
