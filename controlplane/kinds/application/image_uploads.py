"""Application image archives uploaded by focal points: checked in the portal, loaded by a worker."""
from __future__ import annotations

import logging
import os
import secrets as pysecrets
from pathlib import Path

from flask import current_app

from controlplane.audit import trail as audit
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Account, Institution, Task
from controlplane.kinds.application.kind import image_namespace
from controlplane.worker import queue
from controlplane.worker.runner import job
from provisioners.application import image_archives

log = logging.getLogger(__name__)


def uploads_dir() -> Path:
    path = Path(current_app.instance_path) / "image-uploads"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def accept(owner: Account, stream, filename: str) -> Task:
    """Store, check the archive's manifest against the institution's namespace, queue the load.

    Raises ValueError with a message for the user; nothing is kept when it does.
    """
    limit = int(current_app.config["APP_IMAGE_MAX_BYTES"])
    task_id = "image-" + pysecrets.token_hex(8)
    path = uploads_dir() / f"{task_id}.tar"
    written = 0
    try:
        with open(path, "wb") as out:
            os.chmod(path, 0o600)
            while chunk := stream.read(1024 * 1024):
                written += len(chunk)
                if written > limit:
                    raise ValueError(f"the archive is larger than {limit // 2**20} MiB")
                out.write(chunk)
        tags = image_archives.check_image_archive(path, max_bytes=limit)
        refused = image_archives.refused_tags(tags, image_namespace(owner.institution), [])
        if refused:
            raise ValueError("these image names are outside your institution’s namespace "
                             f"({', '.join(image_namespace(owner.institution))}): "
                             + ", ".join(refused))
    except Exception:
        path.unlink(missing_ok=True)
        raise
    task = Task(id=task_id, kind="image_load", owner_id=owner.id, status="queued",
                params={"filename": filename[:200], "tags": tags,
                        "institution_id": owner.institution_id})
    db.session.add(task)
    audit.record("image.uploaded", owner.institution, actor=owner,
                 after={"tags": tags, "bytes": written})
    db.session.commit()
    try:
        queue.enqueue_unique(load, task_id, job_id=task_id)
    except queue.QueueUnavailable:
        task.status, task.message = "failed", "job queue unavailable"
        db.session.commit()
        path.unlink(missing_ok=True)
    return task


def _load_failed(exc: Exception, task_id: str) -> None:
    task = db.session.get(Task, task_id)
    task.status, task.message = "failed", str(exc)[:300]
    (uploads_dir() / f"{task_id}.tar").unlink(missing_ok=True)


@job(on_failure=_load_failed)
def load(task_id: str) -> str:
    """Load the archive into the engine (re-checked there), then delete the file."""
    task = db.session.get(Task, task_id)
    if task is None:
        return "gone"
    path = uploads_dir() / f"{task_id}.tar"
    inst = db.session.get(Institution, task.params["institution_id"])
    task.status, task.progress = "running", 10
    db.session.commit()
    loaded = image_archives.load_image_archive(
        infra.docker_client(), path, image_namespace(inst), [],
        int(current_app.config["APP_IMAGE_MAX_BYTES"]))
    path.unlink(missing_ok=True)
    task.status, task.progress, task.message = "done", 100, ", ".join(loaded)
    audit.record("image.loaded", inst, after={"tags": loaded})
    db.session.commit()
    log.info("event=image.loaded task=%s tags=%s", task_id, ",".join(loaded))
    return "done"
