"""RQ jobs: take ids, reload rows, call the convergent provisioners, record the outcome."""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from flask import Flask, current_app, has_app_context

from . import audit
from .extensions import db
from .lifecycle import set_request_status, set_service_status
from .models import ContentUpload, Service, utcnow

log = logging.getLogger(__name__)
_app: Flask | None = None


def set_app(app: Flask) -> None:
    """Let a worker share one app (and its imports) with every job it forks."""
    global _app
    _app = app


def _context():
    global _app
    if has_app_context():
        return nullcontext()
    if _app is None:
        from . import create_app

        _app = create_app()
    return _app.app_context()


def docker_client():
    client = current_app.extensions.get("docker")
    if client is None:
        import docker

        client = docker.from_env(timeout=120)
        current_app.extensions["docker"] = client
    return client


def proxy_spec():
    from provisioners.proxy import ProxySpec
    from provisioners.runtime import Limits

    cfg = current_app.config
    size = current_app.extensions["policies"].platform["proxy"]
    return ProxySpec(prefix=cfg["DOCKER_PREFIX"], image=cfg["SITE_IMAGE"], bind=cfg["PROXY_BIND"],
                     port=int(cfg["PROXY_PORT"]),
                     limits=Limits(size.memory_bytes, size.nano_cpus, size.pids),
                     extra_labels=dict(cfg["DOCKER_EXTRA_LABELS"]))


def website_spec(svc: Service):
    from provisioners.runtime import Limits
    from provisioners.website import WebsiteSpec

    cfg = current_app.config
    size = current_app.extensions["policies"].size("website", svc.size)
    return WebsiteSpec(service_id=svc.id, institution_id=svc.institution_id,
                       institution=svc.institution.acronym, hostname=svc.hostname,
                       limits=Limits(size.memory_bytes, size.nano_cpus, size.pids),
                       prefix=cfg["DOCKER_PREFIX"], image=cfg["SITE_IMAGE"],
                       extra_labels=dict(cfg["DOCKER_EXTRA_LABELS"]))


def short_error(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:500]


def ensure_proxy() -> None:
    from provisioners import proxy

    proxy.ensure_proxy(docker_client(), proxy_spec())


def _provision(svc: Service) -> None:
    from provisioners import website

    req = svc.request
    if req is not None and req.status in ("approved", "failed"):
        set_request_status(req, "provisioning", error=None)
    if svc.status == "failed":
        set_service_status(svc, "provisioning", error=None)
    db.session.commit()
    website.ensure_website(docker_client(), website_spec(svc), proxy_spec())
    if svc.status != "running":
        set_service_status(svc, "running", pending_action=None, error=None)
    if req is not None and req.status == "provisioning":
        set_request_status(req, "active", error=None)


def _stop(svc: Service) -> None:
    from provisioners import website

    website.stop_website(docker_client(), website_spec(svc))
    set_service_status(svc, "stopped", pending_action=None, error=None)


def _start(svc: Service) -> None:
    from provisioners import website

    website.start_website(docker_client(), website_spec(svc), proxy_spec())
    set_service_status(svc, "running", pending_action=None, error=None)


def _delete(svc: Service) -> None:
    from provisioners import website

    website.remove_website(docker_client(), website_spec(svc), proxy_spec())
    for upload in db.session.query(ContentUpload).filter_by(service_id=svc.id):
        upload_path(upload).unlink(missing_ok=True)
    if svc.status != "deleting":
        set_service_status(svc, "deleting")
    set_service_status(svc, "deleted", pending_action=None, error=None)


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
    from provisioners import website

    with _context():
        upload = db.session.get(ContentUpload, upload_id)
        if upload is None or upload.status != "pending":
            return "gone"
        svc = upload.service
        path = upload_path(upload)
        try:
            if svc.status not in ("running", "stopped"):
                raise RuntimeError(f"service is {svc.status}")
            website.deploy_content(docker_client(), website_spec(svc), path.read_bytes())
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
