"""RQ jobs: take ids, reload rows, call the convergent provisioners, record the outcome."""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from flask import Flask, current_app, has_app_context

from controlplane.audit import trail as audit
from controlplane.kinds import registry as kinds
from controlplane.core.extensions import db
from controlplane.requests.lifecycle import set_request_status, set_service_status
from controlplane.core.models import ContentUpload, Service, utcnow

log = logging.getLogger(__name__)
_app: Flask | None = None


def set_app(app: Flask) -> None:
    """Let a worker share one app (and its imports) with every job it runs."""
    global _app
    _app = app


def _context():
    global _app
    if has_app_context():
        return nullcontext()
    if _app is None:
        from controlplane import create_app

        _app = create_app()
    return _app.app_context()


def short_error(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:500]


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
    if hasattr(kind, "backup") and svc.status != "deleted":
        _final_backup(svc)
    kind.remove(svc)
    from provisioners.directory import service_accounts

    from controlplane.accounts.views import directory_config

    service_accounts.remove_service_account(directory_config(), svc.institution.acronym, svc.id)
    for upload in db.session.query(ContentUpload).filter_by(service_id=svc.id):
        upload_path(upload).unlink(missing_ok=True)
    if svc.status != "deleting":
        set_service_status(svc, "deleting")
    set_service_status(svc, "deleted", pending_action=None, error=None)


def _final_backup(svc: Service) -> None:
    """Keep the data for the retention period before it is removed (skipped if unreachable)."""
    from controlplane.backups import store as backups

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
    from provisioners.directory import service_accounts

    from controlplane.services import credentials as secrets
    from controlplane.accounts.views import directory_config

    cfg = directory_config()
    password = secrets.get(svc, "service_account")
    if password is None:
        password = secrets.generate_password()
        secrets.put(svc, "service_account", password)
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


def run_service_action(service_id: int, action: str) -> str:
    """Bring a service to the state `action` asks for; failures leave it 'failed' with the error."""
    with _context():
        svc = db.session.get(Service, service_id)
        if svc is None or svc.status == "deleted":
            log.info("event=job.skip service=%s action=%s reason=gone", service_id, action)
            return "gone"
        if action != "delete" and svc.status == "deleting":
            return "skipped"
        log.info("event=job.start service=%s action=%s kind=%s", service_id, action, svc.kind)
        try:
            HANDLERS[action](svc)
            db.session.commit()
        except Exception as exc:  # noqa: BLE001 - the error is recorded on the service
            db.session.rollback()
            log.exception("event=job.failed service=%s action=%s", service_id, action)
            svc = db.session.get(Service, service_id)
            message = short_error(exc)
            set_service_status(svc, "failed", action=f"service.{action}_failed",
                               pending_action=action, error=message)
            req = svc.request
            if action == "provision" and req is not None and req.status in ("approved",
                                                                             "provisioning"):
                set_request_status(req, "failed", error=message)
            db.session.commit()
            return "failed"
        log.info("event=job.done service=%s action=%s status=%s", service_id, action, svc.status)
        return svc.status


def upload_path(upload: ContentUpload) -> Path:
    return Path(current_app.instance_path) / "uploads" / f"{upload.service_id}" / f"{upload.id}.tar"


def deploy_upload(upload_id: int) -> str:
    """Replace a site's content with a validated archive stored by the portal."""
    with _context():
        upload = db.session.get(ContentUpload, upload_id)
        if upload is None or upload.status != "pending":
            return "gone"
        svc = upload.service
        path = upload_path(upload)
        try:
            if svc.status not in ("running", "stopped"):
                raise RuntimeError(f"service is {svc.status}")
            kinds.get(svc.kind).deploy(svc, path.read_bytes())
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            log.exception("event=deploy.failed upload=%s service=%s", upload_id, svc.id)
            upload.status, upload.error = "failed", short_error(exc)
            audit.record("service.content_failed", svc, after={"upload": upload.id,
                                                              "error": upload.error})
            db.session.commit()
            return "failed"
        upload.status = "deployed"
        svc.content_deployed_at = utcnow()
        audit.record("service.content_deployed", svc,
                     after={"upload": upload.id, "filename": upload.filename,
                            "files": upload.files, "bytes": upload.size_bytes})
        db.session.commit()
        path.unlink(missing_ok=True)
        log.info("event=deploy.done upload=%s service=%s files=%s", upload_id, svc.id, upload.files)
        return "deployed"
