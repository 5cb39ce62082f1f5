"""Backups of services' data: scheduled, on demand, final on delete; restore; retention."""
from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from controlplane.audit import trail as audit
from controlplane.core import infra
from controlplane.kinds import registry as kinds
from controlplane.worker import queue as tasks
from controlplane.core.extensions import db
from controlplane.services.jobs import _context, short_error
from controlplane.core.models import Backup, Service, utcnow

log = logging.getLogger(__name__)


def directory(svc: Service) -> Path:
    return infra.backups_root() / svc.institution.acronym / str(svc.id)


def take(svc: Service, trigger: str) -> Backup | None:
    """Back the service up now (in the worker); None when its kind keeps no data."""
    kind = kinds.get(svc.kind)
    if not hasattr(kind, "backup"):
        return None
    path = Path(kind.backup(svc, directory(svc)))
    if path is None or not path.exists():
        return None
    days = current_app.extensions["retention"].days(trigger)
    backup = Backup(service_id=svc.id, institution_id=svc.institution_id, trigger=trigger,
                    path=str(path), size_bytes=path.stat().st_size,
                    expires_at=utcnow() + timedelta(days=days))
    db.session.add(backup)
    db.session.flush()
    audit.record("service.backed_up", svc, after={"backup": backup.id, "trigger": trigger,
                                                  "bytes": backup.size_bytes})
    db.session.commit()
    return backup


def run_backup(service_id: int, trigger: str = "manual") -> str:
    """Job: one backup of one service."""
    with _context():
        svc = db.session.get(Service, service_id)
        if svc is None or svc.status != "running":
            return "skipped"
        try:
            backup = take(svc, trigger)
        except Exception as exc:  # noqa: BLE001 - recorded in the trail and the alert
            db.session.rollback()
            log.exception("event=backup.failed service=%s", service_id)
            from controlplane.monitoring.health import raise_alert

            svc = db.session.get(Service, service_id)
            audit.record("service.backup_failed", svc, after={"error": short_error(exc)})
            raise_alert("backup_failed", f"backup:{svc.id}", f"{svc.name}: {short_error(exc)}",
                        service=svc)
            db.session.commit()
            return "failed"
        return "done" if backup else "nothing"


def run_restore(service_id: int, backup_id: int) -> str:
    """Job: put a backup back in place of the service's current data."""
    with _context():
        svc = db.session.get(Service, service_id)
        backup = db.session.get(Backup, backup_id)
        if svc is None or backup is None or backup.service_id != svc.id:
            return "gone"
        try:
            kinds.get(svc.kind).restore(svc, Path(backup.path))
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            log.exception("event=restore.failed service=%s backup=%s", service_id, backup_id)
            svc = db.session.get(Service, service_id)
            audit.record("service.restore_failed", svc, after={"backup": backup_id,
                                                               "error": short_error(exc)})
            svc.error = f"restore failed: {short_error(exc)}"
            db.session.commit()
            return "failed"
        svc.error = None
        audit.record("service.restored", svc, after={"backup": backup_id})
        db.session.commit()
        return "done"


def enqueue_backup(svc: Service, trigger: str = "manual"):
    return tasks.enqueue_unique("controlplane.backups.store.run_backup", svc.id, trigger,
                                job_id=f"service-{svc.id}-backup")


def enqueue_restore(svc: Service, backup: Backup):
    return tasks.enqueue_unique("controlplane.backups.store.run_restore", svc.id, backup.id,
                                job_id=f"service-{svc.id}-restore")


def run_due() -> int:
    """Queue the scheduled backup of every running service whose last one is too old."""
    every = timedelta(hours=int(current_app.config.get("BACKUP_EVERY_HOURS", 24)))
    last = dict(db.session.execute(select(Backup.service_id, func.max(Backup.created_at))
                                   .where(Backup.trigger == "scheduled")
                                   .group_by(Backup.service_id)).all())
    queued = 0
    for svc in db.session.scalars(select(Service).where(Service.status == "running")):
        if not hasattr(kinds.get(svc.kind), "backup"):
            continue
        if last.get(svc.id) is None or utcnow() - last[svc.id] >= every:
            tasks.enqueue_unique("controlplane.backups.store.run_backup", svc.id, "scheduled",
                                 job_id=f"service-{svc.id}-backup")
            queued += 1
    return queued


def purge_expired() -> int:
    """Delete backups past their retention (files first, then rows)."""
    removed = 0
    for backup in db.session.scalars(select(Backup).where(Backup.expires_at < utcnow())):
        Path(backup.path).unlink(missing_ok=True)
        audit.record("backup.expired", backup, after={"path": Path(backup.path).name})
        db.session.delete(backup)
        removed += 1
    db.session.commit()
    root = infra.backups_root()
    if root.exists():
        for folder in sorted(root.glob("*/*"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
    return removed
