"""Alerts for operators (and the institution concerned): one open alert per key."""
from __future__ import annotations

from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Alert, Service, utcnow


def raise_alert(kind: str, key: str, message: str, *, service: Service | None = None,
                institution_id: int | None = None) -> Alert:
    """One open alert per key: raising it again only refreshes the message."""
    alert = db.session.scalar(select(Alert).where(Alert.key == key, Alert.cleared_at.is_(None)))
    if alert is None:
        alert = Alert(kind=kind, key=key, message=message,
                      service_id=service.id if service else None,
                      institution_id=service.institution_id if service else institution_id)
        db.session.add(alert)
    else:
        alert.message = message
    return alert


def clear_alert(key: str) -> None:
    for alert in db.session.scalars(select(Alert).where(Alert.key == key,
                                                        Alert.cleared_at.is_(None))):
        alert.cleared_at = utcnow()
