"""Database model: institutions, accounts, requests, services, uploads and the audit trail."""
from __future__ import annotations

from datetime import date, datetime, timezone

from flask_login import UserMixin
from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.core.extensions import db


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
    # Quota plan name from policies/plans.yaml; None = the plan of its category.
    plan: Mapped[str | None] = mapped_column(String(32))
    mail_enabled: Mapped[bool] = mapped_column(default=False)
    # Bumped to take the institution's row lock before counting its quota (no double spend).
    lock_version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def plan_name(self) -> str:
        return self.plan or self.category

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
    name: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    # The policy decision taken at submission (allowed, automatic, approvals needed, rule).
    decision: Mapped[dict | None] = mapped_column(JSON)
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
    # A short name for kinds that have no host name (database name, application name).
    name: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[str] = mapped_column(String(8))
    # Kind-specific settings (engine, port, environment, bound database, …), plain JSON.
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="provisioning", index=True)
    # What the last failed step was trying to reach: provisioning, stop, start or delete.
    pending_action: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    health: Mapped[str | None] = mapped_column(String(20))  # healthy | unhealthy | unknown
    health_detail: Mapped[str | None] = mapped_column(Text)
    health_changed_at: Mapped[datetime | None]
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
        Index("uq_service_live_name", "institution_id", "kind", "name", unique=True,
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


class Secret(db.Model):
    """A credential of a service, encrypted at rest with the configured key (never logged)."""

    __tablename__ = "secret"
    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    ciphertext: Mapped[bytes]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]

    __table_args__ = (Index("uq_secret_service_name", "service_id", "name", unique=True),)


class AuditEvent(db.Model):
    """Append-only record of every change: who did what to which object, before and after.

    `prev_hash`/`hash` chain each sealed event to the one before it (see audit.seal/verify).
    """

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
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64), index=True)

    institution: Mapped[Institution | None] = relationship()


class AuditSeal(db.Model):
    """Where the chain ended at each sealing: deleting the newest events breaks this link."""

    __tablename__ = "audit_seal"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    last_event_id: Mapped[int]
    last_hash: Mapped[str] = mapped_column(String(64))
    events: Mapped[int]


class Task(db.Model):
    """A long operation run by a worker, with progress the page can poll (RQ job id)."""

    __tablename__ = "task"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(Text)
    result_path: Mapped[str | None] = mapped_column(String(400))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Approval(db.Model):
    """One operator's approval of a request; some rules need two different operators."""

    __tablename__ = "approval"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("request.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship()
    __table_args__ = (Index("uq_approval_request_account", "request_id", "account_id",
                            unique=True),)


class QuotaGrant(db.Model):
    """An exception to the plan: more of one resource for an institution, maybe until a date."""

    __tablename__ = "quota_grant"
    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("request.id"))
    resource: Mapped[str] = mapped_column(String(32))
    amount: Mapped[float]
    justification: Mapped[str] = mapped_column(Text, default="")
    approvers: Mapped[list] = mapped_column(JSON, default=list)
    ends_on: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    institution: Mapped[Institution] = relationship()


class Mailbox(db.Model):
    """A mailbox or alias of an institution; the directory holds the live entry."""

    __tablename__ = "mailbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    address: Mapped[str] = mapped_column(String(254), unique=True)
    is_alias: Mapped[bool] = mapped_column(default=False)
    targets: Mapped[list] = mapped_column(JSON, default=list)
    quota_mib: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    used_bytes: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    institution: Mapped[Institution] = relationship()


class Backup(db.Model):
    """A dump or archive of a service's data, kept until `expires_at`."""

    __tablename__ = "backup"
    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(20))  # scheduled | manual | final
    path: Mapped[str] = mapped_column(String(400))
    size_bytes: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(20), default="done")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]

    service: Mapped[Service] = relationship()


class UsageSample(db.Model):
    """One metering sweep's reading of one service's containers (raw counters)."""

    __tablename__ = "usage_sample"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institution.id"), index=True)
    cpu_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    net_rx: Mapped[int] = mapped_column(BigInteger, default=0)
    net_tx: Mapped[int] = mapped_column(BigInteger, default=0)
    blk_read: Mapped[int] = mapped_column(BigInteger, default=0)
    blk_write: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_used: Mapped[int | None] = mapped_column(BigInteger)


class UsageRollup(db.Model):
    """Usage over one hour or one day for a service (amounts, not counters)."""

    __tablename__ = "usage_rollup"
    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(5))  # hour | day
    start: Mapped[datetime] = mapped_column(index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institution.id"), index=True)
    cpu_seconds: Mapped[float] = mapped_column(default=0.0)
    memory_byte_seconds: Mapped[float] = mapped_column(default=0.0)
    disk_byte_seconds: Mapped[float] = mapped_column(default=0.0)
    net_rx: Mapped[int] = mapped_column(BigInteger, default=0)
    net_tx: Mapped[int] = mapped_column(BigInteger, default=0)
    blk_read: Mapped[int] = mapped_column(BigInteger, default=0)
    blk_write: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_peak: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_peak: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(default=0.0)

    __table_args__ = (Index("uq_rollup", "period", "start", "service_id", unique=True),)


class Alert(db.Model):
    """Something operators (and the institution's focal points) must look at."""

    __tablename__ = "alert"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # unhealthy | quota_warning | …
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institution.id"), index=True)
    key: Mapped[str] = mapped_column(String(120), index=True)  # dedup: one open alert per key
    message: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[datetime | None]

    service: Mapped[Service | None] = relationship()
    institution: Mapped[Institution | None] = relationship()


class PlanOverride(db.Model):
    """An operator's edit of a plan's limits; it wins over policies/plans.yaml."""

    __tablename__ = "plan_override"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)

    @property
    def id(self) -> None:  # audit events name it by its plan (target_id stays empty)
        return None
    quota: Mapped[dict] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RegistryRobot(db.Model):
    """A robot account of an institution for the image registry (CI pipelines, servers).

    It logs in as `robot$<acronym in lowercase>+<name>` with a secret shown once; only the
    secret's SHA-256 is kept (the secret is 256 random bits, so a plain hash is enough).
    """

    __tablename__ = "registry_robot"
    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    institution: Mapped[Institution] = relationship()
    created_by: Mapped[Account | None] = relationship()

    __table_args__ = (
        # One live robot per name in an institution; revoked ones free the name.
        Index("uq_registry_robot_live_name", "institution_id", "name", unique=True,
              sqlite_where=text("revoked_at IS NULL"),
              postgresql_where=text("revoked_at IS NULL")),
    )


DEPLOYMENT_STATES = ("pending", "deployed", "failed", "rolled_back", "superseded")


class Deployment(db.Model):
    """One digest an application was (or was to be) switched to: its first provisioning, a
    push of the tag it follows, or a rollback.

    `pending` until a worker tries it; `deployed` once visitors reach it; `failed` when it
    never served (its health check, a pull, the registry), with `error`; `rolled_back` when a
    rollback replaced it; `superseded` when the tag had moved on before its turn came.
    """

    __tablename__ = "deployment"
    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institution.id"), index=True)
    repository: Mapped[str] = mapped_column(String(255))  # in the registry: minisante/web
    digest: Mapped[str] = mapped_column(String(71))  # sha256:<64 hex>
    tag: Mapped[str | None] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(20))  # provision | push | rollback
    # Who pushed (the registry's actor: a person's uid or a robot), or who asked the rollback.
    pushed_by: Mapped[str | None] = mapped_column(String(200))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    service: Mapped[Service] = relationship()
    actor: Mapped[Account | None] = relationship()

    @property
    def short_digest(self) -> str:
        return self.digest.split(":", 1)[-1][:12]
