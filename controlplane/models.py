"""Database model: institutions, accounts, requests, services, uploads and the audit trail."""
from __future__ import annotations

from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


ROLES = ("focal_point", "operator", "auditor")


class Institution(db.Model):
    __tablename__ = "institution"
    id: Mapped[int] = mapped_column(primary_key=True)
    acronym: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(200), unique=True)
    category: Mapped[str] = mapped_column(String(32), default="ministry")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Institution {self.acronym}>"


class Account(UserMixin, db.Model):
    """A person mirrored from the directory at each login; the directory stays the authority."""

    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    dn: Mapped[str] = mapped_column(String(400))
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20))
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institution.id"))
    locale: Mapped[str | None] = mapped_column(String(8))
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    institution: Mapped[Institution | None] = relationship()

    @property
    def is_focal_point(self) -> bool:
        return self.role == "focal_point"

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def is_auditor(self) -> bool:
        return self.role == "auditor"


REQUEST_STATES = ("submitted", "approved", "rejected", "cancelled", "provisioning", "active", "failed")
# Requests whose hostname is reserved: nobody else may ask for it meanwhile.
REQUEST_OPEN_STATES = ("submitted", "approved", "provisioning")


class Request(db.Model):
    __tablename__ = "request"
    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="submitted", index=True)
    hostname: Mapped[str | None] = mapped_column(String(253))
    size: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    institution: Mapped[Institution] = relationship()
    author: Mapped[Account] = relationship(foreign_keys=[author_id])
    decided_by: Mapped[Account | None] = relationship(foreign_keys=[decided_by_id])
    service: Mapped["Service | None"] = relationship(back_populates="request", uselist=False)

    __table_args__ = (
        # Two open requests can never hold the same hostname, even when submitted at once.
        Index("uq_request_open_hostname", "hostname", unique=True,
              sqlite_where=text("status IN ('submitted', 'approved', 'provisioning')"),
              postgresql_where=text("status IN ('submitted', 'approved', 'provisioning')")),
    )


SERVICE_STATES = ("provisioning", "running", "stopped", "deleting", "deleted", "failed")


class Service(db.Model):
    __tablename__ = "service"
    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("request.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    hostname: Mapped[str | None] = mapped_column(String(253))
    size: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(20), default="provisioning", index=True)
    # What the last failed step was trying to reach: provisioning, stop, start or delete.
    pending_action: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    content_deployed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    institution: Mapped[Institution] = relationship()
    request: Mapped[Request | None] = relationship(back_populates="service")

    __table_args__ = (
        # One live service per hostname; deleted ones free the name.
        Index("uq_service_live_hostname", "hostname", unique=True,
              sqlite_where=text("status != 'deleted'"),
              postgresql_where=text("status != 'deleted'")),
    )


class ContentUpload(db.Model):
    """A validated, normalised site archive waiting for (or done with) deployment."""

    __tablename__ = "content_upload"
    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int]
    files: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    service: Mapped[Service] = relationship()
    author: Mapped[Account] = relationship()


class AuditEvent(db.Model):
    """Append-only record of every change: who did what to which object, before and after."""

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # username, or "system"
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None]
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institution.id"), index=True)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)

    institution: Mapped[Institution | None] = relationship()
