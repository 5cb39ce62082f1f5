"""Metering: store one sample per service per sweep, roll up per hour and day, keep it bounded."""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Institution, Service, UsageRollup, UsageSample, utcnow
from provisioners.docker import metering

log = logging.getLogger(__name__)
GAP_FACTOR = 3  # two samples further apart than this many intervals are not joined


def sample_all() -> int:
    """One sweep of every managed container; readings are summed per service."""
    samples = metering.sweep(infra.docker_client(), prefix=current_app.config["DOCKER_PREFIX"],
                             volumes_root=infra.volumes_root() or None)
    institutions = dict(db.session.execute(select(Institution.acronym, Institution.id)).all())
    live = set(db.session.scalars(select(Service.id).where(Service.status != "deleted")))
    now = utcnow().replace(microsecond=0)
    per_service: dict[int | None, dict] = {}
    for s in samples:
        if s.service_id is not None and s.service_id not in live:
            continue
        row = per_service.setdefault(s.service_id, {
            "institution_id": institutions.get(s.institution), "cpu_ns": 0, "memory_bytes": 0,
            "net_rx": 0, "net_tx": 0, "blk_read": 0, "blk_write": 0, "disk_used": None})
        for key in ("cpu_ns", "memory_bytes", "blk_read", "blk_write"):
            row[key] += getattr(s, key) or 0
        for key in ("net_rx", "net_tx"):
            row[key] += getattr(s, key) or 0
        if s.disk_used is not None and s.kind != "sftp":  # it mounts the site's own volume
            row["disk_used"] = (row["disk_used"] or 0) + s.disk_used
    for service_id, row in per_service.items():
        db.session.add(UsageSample(at=now, service_id=service_id, **row))
    db.session.commit()
    log.info("event=metering.sweep containers=%d services=%d", len(samples), len(per_service))
    return len(per_service)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def rollup(now: datetime | None = None) -> int:
    """Recompute hourly rollups for the last two hours and daily ones for the last two days."""
    now = now or utcnow()
    interval = max(int(current_app.config.get("METERING_INTERVAL") or 30), 1)
    since = _hour(now) - timedelta(hours=1)
    rows = db.session.scalars(select(UsageSample).where(
        UsageSample.at >= since - timedelta(seconds=interval * GAP_FACTOR))
        .order_by(UsageSample.service_id, UsageSample.at)).all()
    hours: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    prev: UsageSample | None = None
    for sample in rows:
        if prev is not None and prev.service_id == sample.service_id and sample.at >= since:
            dt = (sample.at - prev.at).total_seconds()
            if 0 < dt <= interval * GAP_FACTOR:
                acc = hours[(_hour(sample.at), sample.service_id, sample.institution_id)]
                # A counter that went down means the container restarted: count from zero.
                for key in ("cpu_ns", "net_rx", "net_tx", "blk_read", "blk_write"):
                    a, b = getattr(prev, key) or 0, getattr(sample, key) or 0
                    acc[key] += b - a if b >= a else b
                acc["memory_byte_seconds"] += (sample.memory_bytes or 0) * dt
                acc["disk_byte_seconds"] += (sample.disk_used or 0) * dt
                acc["memory_peak"] = max(acc["memory_peak"], sample.memory_bytes or 0)
                acc["disk_peak"] = max(acc["disk_peak"], sample.disk_used or 0)
                acc["seconds"] += dt
        prev = sample
    for (start, service_id, institution_id), acc in hours.items():
        _upsert("hour", start, service_id, institution_id, acc)
    db.session.commit()
    days = 0
    for day in {(_hour(now) - timedelta(hours=1)).replace(hour=0), _hour(now).replace(hour=0)}:
        days += _rollup_day(day)
    db.session.commit()
    return len(hours) + days


def _upsert(period: str, start: datetime, service_id, institution_id, acc: dict) -> None:
    row = db.session.scalar(select(UsageRollup).where(
        UsageRollup.period == period, UsageRollup.start == start,
        UsageRollup.service_id.is_(None) if service_id is None
        else UsageRollup.service_id == service_id))
    if row is None:
        row = UsageRollup(period=period, start=start, service_id=service_id)
        db.session.add(row)
    row.institution_id = institution_id
    row.cpu_seconds = acc.get("cpu_ns", 0) / 1e9 if "cpu_ns" in acc else acc.get("cpu_seconds", 0)
    for key in ("memory_byte_seconds", "disk_byte_seconds", "seconds"):
        setattr(row, key, float(acc.get(key, 0)))
    for key in ("net_rx", "net_tx", "blk_read", "blk_write", "memory_peak", "disk_peak"):
        setattr(row, key, int(acc.get(key, 0)))


def _rollup_day(day: datetime) -> int:
    rows = db.session.scalars(select(UsageRollup).where(
        UsageRollup.period == "hour", UsageRollup.start >= day,
        UsageRollup.start < day + timedelta(days=1))).all()
    acc: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        a = acc[(r.service_id, r.institution_id)]
        for key in ("cpu_seconds", "memory_byte_seconds", "disk_byte_seconds", "seconds",
                    "net_rx", "net_tx", "blk_read", "blk_write"):
            a[key] += getattr(r, key) or 0
        a["memory_peak"] = max(a["memory_peak"], r.memory_peak or 0)
        a["disk_peak"] = max(a["disk_peak"], r.disk_peak or 0)
    for (service_id, institution_id), a in acc.items():
        _upsert("day", day, service_id, institution_id, a)
    return len(acc)


def purge_old(now: datetime | None = None) -> int:
    """Samples for a week, hourly rollups for 90 days, daily ones for five years (configurable)."""
    now = now or utcnow()
    cfg = current_app.config
    removed = 0
    for stmt in (
        delete(UsageSample).where(UsageSample.at < now - timedelta(
            days=int(cfg.get("USAGE_SAMPLE_DAYS", 7)))),
        delete(UsageRollup).where(UsageRollup.period == "hour", UsageRollup.start < now - timedelta(
            days=int(cfg.get("USAGE_HOURLY_DAYS", 90)))),
        delete(UsageRollup).where(UsageRollup.period == "day", UsageRollup.start < now - timedelta(
            days=int(cfg.get("USAGE_DAILY_DAYS", 5 * 366)))),
    ):
        removed += db.session.execute(stmt).rowcount or 0
    db.session.commit()
    return removed


def latest_by_service() -> dict[int, UsageSample]:
    """The most recent sample of every service (one query)."""
    newest = select(UsageSample.service_id, func.max(UsageSample.at).label("at")) \
        .where(UsageSample.service_id.is_not(None)).group_by(UsageSample.service_id).subquery()
    rows = db.session.scalars(select(UsageSample).join(
        newest, (UsageSample.service_id == newest.c.service_id) & (UsageSample.at == newest.c.at)))
    return {r.service_id: r for r in rows}


def series(period: str, *, institution_id: int | None = None, service_id: int | None = None,
           since: datetime | None = None) -> list[dict]:
    """Rollups summed per period start, for charts."""
    query = select(UsageRollup.start, func.sum(UsageRollup.cpu_seconds),
                   func.sum(UsageRollup.memory_byte_seconds), func.sum(UsageRollup.seconds),
                   func.sum(UsageRollup.net_rx + UsageRollup.net_tx),
                   func.sum(UsageRollup.disk_byte_seconds)) \
        .where(UsageRollup.period == period).group_by(UsageRollup.start) \
        .order_by(UsageRollup.start)
    if institution_id is not None:
        query = query.where(UsageRollup.institution_id == institution_id)
    if service_id is not None:
        query = query.where(UsageRollup.service_id == service_id)
    if since is not None:
        query = query.where(UsageRollup.start >= since)
    span = 3600 if period == "hour" else 86400
    out = []
    for start, cpu, mem_bs, secs, net, disk_bs in db.session.execute(query):
        out.append({"start": start, "cpu_cores": (cpu or 0) / span,
                    "memory_bytes": (mem_bs or 0) / span, "network_bytes": int(net or 0),
                    "disk_bytes": (disk_bs or 0) / span})
    return out
