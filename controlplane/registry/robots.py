"""Robot accounts of the registry: created for one institution, secret shown once, revocable,
every creation, revocation and use audited.

A robot logs in with the user name `robot$<acronym in lowercase>+<name>` (for example
`robot$minisante+ci`) and its secret as the password. Only the secret's SHA-256 is stored.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import Account, Institution, RegistryRobot, utcnow

PREFIX = "robot$"
NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
SECRET_BYTES = 32  # 256 random bits
MAX_SECRET = 256
MAX_DAYS = 3650


class RobotError(Exception):
    """A refusal to show the person (already translated, lazily)."""

    def __init__(self, message) -> None:
        super().__init__(str(message))
        self.message = message


def login_name(robot: RegistryRobot) -> str:
    return f"{PREFIX}{robot.institution.acronym.lower()}+{robot.name}"


def parse_login(username: str) -> tuple[str, str] | None:
    """(acronym in lowercase, robot name) from a robot's user name, or None."""
    if not isinstance(username, str) or not username.startswith(PREFIX):
        return None
    namespace, sep, name = username[len(PREFIX):].partition("+")
    if not sep or not namespace or not NAME_RE.fullmatch(name):
        return None
    return namespace, name


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def is_live(robot: RegistryRobot) -> bool:
    return robot.revoked_at is None and (robot.expires_at is None or robot.expires_at > utcnow())


def create(actor: Account, institution: Institution, name: str,
           days: int | None = None) -> tuple[RegistryRobot, str]:
    """Create a robot and return it with its secret (the only time the secret exists)."""
    name = (name or "").strip().lower()
    if not NAME_RE.fullmatch(name):
        raise RobotError(_l("Use 1 to 32 lowercase letters, digits and hyphens (not at the "
                            "start or the end)."))
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise RobotError(_l("The validity must be between 1 and %(max)s days.", max=MAX_DAYS))
    taken = db.session.scalar(select(RegistryRobot.id).where(
        RegistryRobot.institution_id == institution.id, RegistryRobot.name == name,
        RegistryRobot.revoked_at.is_(None)))
    if taken is not None:
        raise RobotError(_l("A robot account named “%(name)s” already exists; revoke it first "
                            "or choose another name.", name=name))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    now = utcnow()
    robot = RegistryRobot(institution=institution, name=name, secret_sha256=hash_secret(secret),
                          created_by_id=actor.id, created_at=now,
                          expires_at=now + timedelta(days=days) if days else None)
    db.session.add(robot)
    db.session.flush()
    audit.record("registry.robot_created", robot, actor=actor,
                 after={"login": login_name(robot),
                        "expires_at": robot.expires_at.isoformat() if robot.expires_at else None})
    db.session.commit()
    return robot, secret


def revoke(actor: Account, robot: RegistryRobot) -> bool:
    """Revoke a robot (False when it already was); its tokens stop at once, as no new token is
    issued and issued ones expire within REGISTRY_TOKEN_TTL."""
    if robot.revoked_at is not None:
        return False
    robot.revoked_at = utcnow()
    audit.record("registry.robot_revoked", robot, actor=actor,
                 after={"login": login_name(robot)})
    db.session.commit()
    return True


def verify(username: str, secret: str) -> RegistryRobot | None:
    """The live robot these credentials belong to, or None."""
    parsed = parse_login(username)
    if parsed is None or not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET:
        return None
    namespace, name = parsed
    robot = db.session.scalar(
        select(RegistryRobot).join(Institution)
        .where(func.lower(Institution.acronym) == namespace, RegistryRobot.name == name,
               RegistryRobot.revoked_at.is_(None)))
    if robot is None or not hmac.compare_digest(robot.secret_sha256, hash_secret(secret)):
        return None
    return robot if is_live(robot) else None


def mark_used(robot: RegistryRobot, access: list[dict]) -> None:
    """Note the robot's use (last use and an audit event naming what was granted)."""
    robot.last_used_at = utcnow()
    audit.record("registry.robot_used", robot, actor=None,
                 after={"login": login_name(robot),
                        "granted": [f"{a['name']}:{','.join(a['actions'])}" for a in access]})
    db.session.commit()


def visible_to(user: Account) -> list[RegistryRobot]:
    """Robots the user may see: their institution's for a focal point, all for staff."""
    query = select(RegistryRobot).order_by(RegistryRobot.revoked_at.is_not(None),
                                           RegistryRobot.created_at.desc())
    if user.is_focal_point:
        query = query.where(RegistryRobot.institution_id == user.institution_id)
    return list(db.session.scalars(query))
