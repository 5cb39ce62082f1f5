"""Append audit events, and seal them into a hash chain whose tampering `verify` reports."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Account, AuditEvent, AuditSeal

log = logging.getLogger(__name__)
SYSTEM = "system"
GENESIS = "0" * 64


def snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """Plain, JSON-safe copy of the fields that matter for the record."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        out[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def record(action: str, target: Any, *, actor: Account | None = None,
           before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """Add an event to the session; the caller's commit makes it durable with the change itself."""
    if getattr(target, "id", None) is None:
        db.session.flush()
    if hasattr(target, "acronym"):
        institution_id = target.id
    else:
        institution_id = getattr(target, "institution_id", None)
        service = getattr(target, "service", None)
        if institution_id is None and service is not None:
            institution_id = service.institution_id
    event = AuditEvent(
        actor=actor.username if actor is not None else SYSTEM,
        actor_id=actor.id if actor is not None else None,
        action=action,
        target_type=target.__tablename__,
        target_id=target.id,
        institution_id=institution_id,
        before=before,
        after=after,
    )
    db.session.add(event)
    return event


def events_of(target_type: str, target_id: int, *, newest_first: bool = False,
              limit: int | None = None) -> list[AuditEvent]:
    """One object's history, for its page."""
    order = AuditEvent.id.desc() if newest_first else AuditEvent.id
    query = select(AuditEvent).where(AuditEvent.target_type == target_type,
                                     AuditEvent.target_id == target_id).order_by(order)
    return list(db.session.scalars(query.limit(limit) if limit else query))


def event_digest(event: AuditEvent, prev_hash: str) -> str:
    """SHA-256 over the event's content and the previous event's hash (canonical JSON)."""
    payload = {
        "id": event.id,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "actor_id": event.actor_id,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "institution_id": event.institution_id,
        "before": event.before,
        "after": event.after,
        "prev": prev_hash,
    }
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def seal(batch: int = 5000) -> int:
    """Chain every unsealed event to its predecessor, in id order; returns how many were sealed.

    Events are written without a hash (cheap, no global lock in request handlers); one
    scheduled job seals them in order moments later, so only the short unsealed tail is
    unprotected.
    """
    last = db.session.scalar(select(AuditEvent).where(AuditEvent.hash.is_not(None))
                             .order_by(AuditEvent.id.desc()).limit(1))
    prev = last.hash if last is not None else GENESIS
    after_id = last.id if last is not None else 0
    pending = db.session.scalars(select(AuditEvent).where(AuditEvent.id > after_id)
                                 .order_by(AuditEvent.id).limit(batch)).all()
    for event in pending:
        event.prev_hash = prev
        event.hash = prev = event_digest(event, prev)
    if pending:
        db.session.add(AuditSeal(last_event_id=pending[-1].id, last_hash=prev,
                                 events=len(pending)))
        db.session.commit()
        log.info("event=audit.sealed count=%d last=%d", len(pending), pending[-1].id)
    return len(pending)


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    unsealed: int
    first_bad_id: int | None = None
    problem: str | None = None  # edited | deleted | reordered | truncated


def verify() -> Verification:
    """Recompute the chain; report the first event that was edited, deleted or reordered."""
    prev, prev_id, checked, unsealed = GENESIS, 0, 0, 0
    rows = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)
                              .execution_options(yield_per=1000)).scalars()
    for event in rows:
        if event.hash is None:
            unsealed += 1
            continue
        if unsealed:
            # A sealed event after an unsealed one: someone cleared a hash, or inserted rows.
            return Verification(False, checked, unsealed, event.id, "edited")
        if event.prev_hash != prev:
            known = db.session.scalar(select(AuditEvent.id).where(
                AuditEvent.hash == event.prev_hash).limit(1))
            problem = "reordered" if known is not None else "deleted"
            return Verification(False, checked, unsealed, event.id, problem)
        if event_digest(event, prev) != event.hash:
            return Verification(False, checked, unsealed, event.id, "edited")
        prev, prev_id = event.hash, event.id
        checked += 1
    last_seal = db.session.scalar(select(AuditSeal).order_by(AuditSeal.id.desc()).limit(1))
    if last_seal is not None and (last_seal.last_event_id > prev_id
                                  or (last_seal.last_event_id == prev_id
                                      and last_seal.last_hash != prev)):
        return Verification(False, checked, unsealed, last_seal.last_event_id, "truncated")
    return Verification(True, checked, unsealed)
