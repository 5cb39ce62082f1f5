"""What people ask of a service (stop, start, delete, retry): record the intent, then a job."""
from __future__ import annotations

import logging

from flask_babel import lazy_gettext as _l

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import Account, Service
from controlplane.core.transitions import LifecycleError
from controlplane.kinds import registry as kinds
from controlplane.requests.states import set_request_status
from controlplane.services.jobs import run_service_action
from controlplane.services.states import SERVICE_ACTIONS, SERVICE_FIELDS, set_service_status
from controlplane.worker import queue

log = logging.getLogger(__name__)


def allowed_actions(svc: Service) -> set[str]:
    """The actions the service's state and its kind allow now."""
    allowed = SERVICE_ACTIONS.get(svc.status, set())
    kind = kinds.get(svc.kind)
    if kind.actions is not None:
        allowed = allowed & kind.actions
    return allowed


def request_service_action(actor: Account, svc: Service, action: str) -> None:
    """stop / start / delete / retry: record the intent, then let a worker do it."""
    if action not in allowed_actions(svc) or (svc.pending_action and svc.status != "failed"):
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
        queue.enqueue_unique(run_service_action, svc.id, action,
                             job_id=f"service-{svc.id}-{action}")
    except queue.QueueUnavailable as exc:
        log.error("event=enqueue.failed service=%s action=%s error=%s", svc.id, action, exc)
        set_service_status(svc, "failed", pending_action=action,
                           error="job queue unavailable; retry when it is back")
        if svc.request is not None and svc.request.status in ("approved", "provisioning"):
            set_request_status(svc.request, "failed", error="job queue unavailable")
        db.session.commit()
