"""Content deployed into a service (a website's files): the stored upload and its deploy job."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import current_app

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import ContentUpload, utcnow
from controlplane.kinds import registry as kinds
from controlplane.kinds.base import Deployable
from controlplane.worker import queue
from controlplane.worker.runner import job, short_error

log = logging.getLogger(__name__)


def upload_path(upload: ContentUpload) -> Path:
    return Path(current_app.instance_path) / "uploads" / f"{upload.service_id}" / f"{upload.id}.tar"


def enqueue_deploy(upload_id: int):
    return queue.enqueue_unique(deploy_upload, upload_id, job_id=f"upload-{upload_id}")


def _deploy_failed(exc: Exception, upload_id: int) -> None:
    upload = db.session.get(ContentUpload, upload_id)
    upload.status, upload.error = "failed", short_error(exc)
    audit.record("service.content_failed", upload.service,
                 after={"upload": upload.id, "error": upload.error})


@job(on_failure=_deploy_failed)
def deploy_upload(upload_id: int) -> str:
    """Replace a site's content with a validated archive stored by the portal."""
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
    kind.deploy(svc, path.read_bytes())
    upload.status = "deployed"
    svc.content_deployed_at = utcnow()
    audit.record("service.content_deployed", svc,
                 after={"upload": upload.id, "filename": upload.filename,
                        "files": upload.files, "bytes": upload.size_bytes})
    db.session.commit()
    path.unlink(missing_ok=True)
    return "deployed"
