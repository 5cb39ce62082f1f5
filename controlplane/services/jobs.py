"""The service job: bring a service to the state an action asks for, with convergent steps."""
from __future__ import annotations

import logging

from controlplane.audit import trail as audit
from controlplane.backups import store as backups
from controlplane.core.extensions import db
from controlplane.core.infra import directory_config
from controlplane.core.models import ContentUpload, Service
from controlplane.kinds import registry as kinds
from controlplane.kinds.base import BackedUp
from controlplane.requests.states import set_request_status
from controlplane.services import content, credentials
from controlplane.services.states import set_service_status
from controlplane.worker.runner import job, short_error
from provisioners.directory import service_accounts

log = logging.getLogger(__name__)


def _provision(svc: Service) -> None:
    req = svc.request
    if req is not None and req.status in ("approved", "failed"):
        set_request_status(req, "provisioning", error=None)
    if svc.status == "failed":
        set_service_status(svc, "provisioning", error=None)
    db.session.commit()
    kinds.get(svc.kind).provision(svc)
    # After the service answers: its directory account is not on the path to the first byte.
    ensure_service_account(svc)
    if svc.status != "running":
        set_service_status(svc, "running", pending_action=None, error=None)
    if req is not None and req.status == "provisioning":
        set_request_status(req, "active", error=None)


def _stop(svc: Service) -> None:
    kinds.get(svc.kind).stop(svc)
    set_service_status(svc, "stopped", pending_action=None, error=None)


def _start(svc: Service) -> None:
    kinds.get(svc.kind).start(svc)
    set_service_status(svc, "running", pending_action=None, error=None)


def _delete(svc: Service) -> None:
    kind = kinds.get(svc.kind)
    if isinstance(kind, BackedUp) and svc.status != "deleted":
        _final_backup(svc)
    kind.remove(svc)
    service_accounts.remove_service_account(directory_config(), svc.institution.acronym, svc.id)
    for upload in db.session.query(ContentUpload).filter_by(service_id=svc.id):
        content.upload_path(upload).unlink(missing_ok=True)
    if svc.status != "deleting":
        set_service_status(svc, "deleting")
    set_service_status(svc, "deleted", pending_action=None, error=None)


def _final_backup(svc: Service) -> None:
    """Keep the data for the retention period before it is removed (skipped if unreachable)."""
    try:
        kinds.get(svc.kind).start(svc)  # a stopped service is started for its last dump
        backups.take(svc, "final")
    except Exception as exc:  # noqa: BLE001 - a failed service may have no data left at all
        db.session.rollback()
        log.warning("event=backup.final_skipped service=%s error=%s", svc.id, short_error(exc))
        audit.record("service.final_backup_skipped", svc, after={"error": short_error(exc)})
        db.session.commit()


def ensure_service_account(svc: Service) -> None:
    """The service's account in its institution's OU, and its managers group (the requester)."""
    cfg = directory_config()
    password = credentials.get(svc, "service_account")
    if password is None:
        password = credentials.generate_password()
        credentials.put(svc, "service_account", password)
        db.session.commit()
    acronym = svc.institution.acronym
    service_accounts.ensure_service_account(
        cfg, acronym, svc.id, password, f"{svc.kind} {svc.hostname or svc.name or svc.id}")
    author = svc.request.author if svc.request is not None else None
    if author is not None and author.institution_id == svc.institution_id:
        try:
            service_accounts.add_manager(cfg, acronym, svc.id, author.username)
        except ValueError as exc:  # the requester left the directory since: no manager
            log.warning("event=service.manager_skipped service=%s user=%s reason=%s", svc.id,
                        author.username, exc)


HANDLERS = {"provision": _provision, "stop": _stop, "start": _start, "delete": _delete}


def _action_failed(exc: Exception, service_id: int, action: str) -> None:
    """The service (and a request being provisioned) turns 'failed' with the error."""
    svc = db.session.get(Service, service_id)
    message = short_error(exc)
    set_service_status(svc, "failed", action=f"service.{action}_failed",
                       pending_action=action, error=message)
    req = svc.request
    if action == "provision" and req is not None and req.status in ("approved", "provisioning"):
        set_request_status(req, "failed", error=message)


@job(on_failure=_action_failed)
def run_service_action(service_id: int, action: str) -> str:
    """Bring a service to the state `action` asks for; failures leave it 'failed' with the error."""
    svc = db.session.get(Service, service_id)
    if svc is None or svc.status == "deleted":
        log.info("event=job.skip service=%s action=%s reason=gone", service_id, action)
        return "gone"
    if action != "delete" and svc.status == "deleting":
        return "skipped"
    HANDLERS[action](svc)
    db.session.commit()
    log.info("event=service.converged service=%s action=%s status=%s", service_id, action,
             svc.status)
    return svc.status
