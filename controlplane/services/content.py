"""Content deployed into a service (a website's files): the stored upload and its deploy job."""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import current_app
from flask_babel import force_locale

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import ContentUpload, utcnow
from controlplane.kinds import registry as kinds
from controlplane.kinds.base import Deployable
from controlplane.services import archives
from controlplane.worker import queue
from controlplane.worker.runner import job, short_error

log = logging.getLogger(__name__)


def upload_folder(service_id: int) -> Path:
    return Path(current_app.instance_path) / "uploads" / f"{service_id}"


def upload_path(upload: ContentUpload) -> Path:
    """The archive as the portal received it (any accepted format), until it is deployed."""
    return upload_folder(upload.service_id) / f"{upload.id}.tar"


def incoming_path(service_id: int) -> Path:
    """A new name for an archive being received (before its upload row exists)."""
    return upload_folder(service_id) / f"incoming-{secrets.token_hex(8)}.part"


def enqueue_deploy(upload_id: int):
    return queue.enqueue_unique(deploy_upload, upload_id, job_id=f"upload-{upload_id}")


def _deploy_failed(exc: Exception, upload_id: int) -> None:
    upload = db.session.get(ContentUpload, upload_id)
    upload.status, upload.error = "failed", short_error(exc)
    audit.record("service.content_failed", upload.service,
                 after={"upload": upload.id, "error": upload.error})


def _author_locale(upload: ContentUpload) -> str:
    """A refusal is written in the language of the person who uploaded the archive."""
    chosen = upload.author.locale if upload.author is not None else None
    if chosen in current_app.config["LANGUAGES"]:
        return chosen
    return current_app.config.get("BABEL_DEFAULT_LOCALE", "fr")


@job(on_failure=_deploy_failed)
def deploy_upload(upload_id: int) -> str:
    """Check the archive stored by the portal, rebuild it as a clean tar and replace the site's
    content with it; a refused archive leaves the site as it was."""
    upload = db.session.get(ContentUpload, upload_id)
    if upload is None or upload.status != "pending":
        return "gone"
    svc = upload.service
    path = upload_path(upload)
    kind = kinds.get(svc.kind)
    if svc.status not in ("running", "stopped"):
        raise RuntimeError(f"service is {svc.status}")
    if not isinstance(kind, Deployable):
        raise RuntimeError(f"a {svc.kind} takes no content upload")
    disk_bytes = current_app.extensions["policies"].size(svc.kind, svc.size).disk_bytes
    clean_path = path.with_name(f"{upload.id}.clean.tar")
    try:
        with force_locale(_author_locale(upload)):  # the message is rendered when raised
            clean = archives.clean_archive_file(path, clean_path, max_unpacked=disk_bytes)
    except archives.ArchiveError as exc:
        upload.status, upload.error = "failed", str(exc)
        audit.record("service.content_failed", svc,
                     after={"upload": upload.id, "error": upload.error})
        db.session.commit()
        path.unlink(missing_ok=True)
        log.info("event=content.refused upload=%s service=%s", upload.id, svc.id)
        return "refused"
    try:
        upload.files, upload.size_bytes = clean.files, clean.total_bytes
        kind.deploy(svc, clean.path)
    finally:
        clean_path.unlink(missing_ok=True)
    upload.status = "deployed"
    svc.content_deployed_at = utcnow()
    audit.record("service.content_deployed", svc,
                 after={"upload": upload.id, "filename": upload.filename,
                        "files": upload.files, "bytes": upload.size_bytes})
    db.session.commit()
    path.unlink(missing_ok=True)
    return "deployed"
