"""Backup jobs: one backup, one restore, the scheduled round and the retention sweep."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from controlplane.audit import trail as audit
from controlplane.backups import store
from controlplane.core.extensions import db
from controlplane.core.models import Backup, Service, utcnow
from controlplane.kinds import registry as kinds
from controlplane.kinds.base import BackedUp, Restorable
from controlplane.monitoring.alerts import raise_alert
from controlplane.worker import queue
from controlplane.worker.runner import job, short_error


def enqueue_backup(svc: Service, trigger: str = "manual"):
    return queue.enqueue_unique(run_backup, svc.id, trigger, job_id=f"service-{svc.id}-backup")


def enqueue_restore(svc: Service, backup: Backup):
    return queue.enqueue_unique(run_restore, svc.id, backup.id,
                                job_id=f"service-{svc.id}-restore")


def _backup_failed(exc: Exception, service_id: int, trigger: str = "manual") -> None:
    """Recorded in the trail and as an alert for operators."""
    svc = db.session.get(Service, service_id)
    audit.record("service.backup_failed", svc, after={"error": short_error(exc)})
    raise_alert("backup_failed", f"backup:{svc.id}", f"{svc.name}: {short_error(exc)}",
                service=svc)


@job(on_failure=_backup_failed)
def run_backup(service_id: int, trigger: str = "manual") -> str:
    """One backup of one service."""
    svc = db.session.get(Service, service_id)
    if svc is None or svc.status != "running":
        return "skipped"
    return "done" if store.take(svc, trigger) else "nothing"


def _restore_failed(exc: Exception, service_id: int, backup_id: int) -> None:
    svc = db.session.get(Service, service_id)
    audit.record("service.restore_failed", svc, after={"backup": backup_id,
                                                       "error": short_error(exc)})
    svc.error = f"restore failed: {short_error(exc)}"


@job(on_failure=_restore_failed)
def run_restore(service_id: int, backup_id: int) -> str:
    """Put a backup back in place of the service's current data."""
    svc = db.session.get(Service, service_id)
    backup = db.session.get(Backup, backup_id)
    if svc is None or backup is None or backup.service_id != svc.id:
        return "gone"
    kind = kinds.get(svc.kind)
    if not isinstance(kind, Restorable):
        raise RuntimeError(f"a {svc.kind} cannot be restored from a backup")
    kind.restore(svc, Path(backup.path))
    svc.error = None
    audit.record("service.restored", svc, after={"backup": backup_id})
    db.session.commit()
    return "done"


@job()
def scheduled_backups() -> int:
    """Queue the scheduled backup of every running service whose last one is too old."""
    every = timedelta(hours=int(current_app.config.get("BACKUP_EVERY_HOURS", 24)))
    last = dict(db.session.execute(select(Backup.service_id, func.max(Backup.created_at))
                                   .where(Backup.trigger == "scheduled")
                                   .group_by(Backup.service_id)).all())
    queued = 0
    for svc in db.session.scalars(select(Service).where(Service.status == "running")):
        if not isinstance(kinds.get(svc.kind), BackedUp):
            continue
        if last.get(svc.id) is None or utcnow() - last[svc.id] >= every:
            enqueue_backup(svc, "scheduled")
            queued += 1
    return queued


@job()
def purge_expired() -> int:
    """Delete backups past their retention (files first, then rows)."""
    return store.purge_expired()
