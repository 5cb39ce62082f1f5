"""Long report jobs with progress a page can poll (Task rows keyed by the RQ job id)."""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Account, Institution, Task
from controlplane.reporting import statements
from controlplane.worker import queue
from controlplane.worker.runner import job

log = logging.getLogger(__name__)


def reports_dir() -> Path:
    return Path(current_app.instance_path) / "reports"


def start_statements(owner: Account, month: str, institution_id: int | None) -> Task:
    """Refuse a second identical report while one runs; otherwise queue a new one."""
    statements.parse_month(month)
    params = {"month": month, "institution_id": institution_id}
    running = db.session.scalar(select(Task).where(
        Task.kind == "statements", Task.owner_id == owner.id,
        Task.status.in_(("queued", "running"))))
    if running is not None and running.params == params:
        return running
    task = Task(id="statements-" + secrets.token_hex(8), kind="statements", owner_id=owner.id,
                params=params, status="queued", progress=0)
    db.session.add(task)
    db.session.commit()
    try:
        queue.enqueue_unique(generate_statements, task.id, job_id=task.id)
    except queue.QueueUnavailable:
        task.status, task.message = "failed", "job queue unavailable"
        db.session.commit()
    return task


def _statements_failed(exc: Exception, task_id: str) -> None:
    """Shown on the task page."""
    task = db.session.get(Task, task_id)
    task.status, task.message = "failed", str(exc)[:300]


@job(on_failure=_statements_failed)
def generate_statements(task_id: str) -> str:
    """Build every requested institution's statement, reporting progress as it goes."""
    task = db.session.get(Task, task_id)
    if task is None:
        return "gone"
    year, month = statements.parse_month(task.params["month"])
    query = select(Institution).order_by(Institution.acronym)
    if task.params.get("institution_id"):
        query = query.where(Institution.id == task.params["institution_id"])
    institutions = db.session.scalars(query).all()
    task.status = "running"
    db.session.commit()
    built = []
    for n, inst in enumerate(institutions, start=1):
        built.append(statements.build(inst, year, month))
        task.progress = int(90 * n / max(len(institutions), 1))
        task.message = inst.acronym
        db.session.commit()
    out = reports_dir() / task.id
    out.mkdir(parents=True, exist_ok=True)
    (out / "statements.csv").write_bytes(statements.to_csv(built))
    with force_locale("fr"):
        titles = {"title": _("Usage statement"), "service": _("Service"),
                  "kind": _("Kind"), "cpu": _("CPU-hours"), "memory": _("Memory GiB-months"),
                  "disk": _("Disk GiB-months"), "network": _("Network GiB"),
                  "mailboxes": _("Mailboxes")}
    (out / "statements.pdf").write_bytes(statements.to_pdf(built, titles))
    task.status, task.progress, task.result_path = "done", 100, str(out)
    task.message = f"{len(built)}"
    db.session.commit()
    return "done"
