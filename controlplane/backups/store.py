"""Backups of services' data on disk: where they go, taking one, and retention."""
from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from controlplane.audit import trail as audit
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Backup, Service, utcnow
from controlplane.kinds import registry as kinds
from controlplane.kinds.base import BackedUp

log = logging.getLogger(__name__)


def directory(svc: Service) -> Path:
    return infra.backups_root() / svc.institution.acronym / str(svc.id)


def take(svc: Service, trigger: str) -> Backup | None:
    """Back the service up now (in the worker); None when its kind keeps no data."""
    kind = kinds.get(svc.kind)
    if not isinstance(kind, BackedUp):
        return None
    written = kind.backup(svc, directory(svc))
    if written is None or not Path(written).exists():
        return None
    path = Path(written)
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
