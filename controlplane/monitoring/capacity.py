"""Capacity of the data centre: physical, allocated (what was granted) and used (metered)."""
from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Institution, Service, UsageRollup, utcnow
from controlplane.monitoring import usage

LIVE = ("provisioning", "running", "stopped", "failed", "deleting")


@dataclass
class Figures:
    cpu: float = 0.0  # cores
    memory: int = 0  # bytes
    disk: int = 0  # bytes


@dataclass
class InstitutionCapacity:
    institution: Institution
    allocated: Figures = field(default_factory=Figures)
    used: Figures = field(default_factory=Figures)
    services: int = 0


def host() -> Figures:
    """What this machine has (the one the workers run containers on)."""
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    root = Path(current_app.instance_path)
    root.mkdir(parents=True, exist_ok=True)
    return Figures(cpu=float(os.cpu_count() or 1), memory=mem, disk=shutil.disk_usage(root).total)


def cpu_rates(hours: int = 1) -> dict[int, float]:
    """Average cores used per service over the last complete hour(s)."""
    since = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    rows = db.session.execute(select(UsageRollup.service_id, UsageRollup.cpu_seconds,
                                     UsageRollup.seconds)
                              .where(UsageRollup.period == "hour", UsageRollup.start >= since))
    acc: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for service_id, cpu, secs in rows:
        if service_id is not None:
            acc[service_id][0] += cpu or 0
            acc[service_id][1] += secs or 0
    return {sid: (cpu / secs if secs else 0.0) for sid, (cpu, secs) in acc.items()}


def per_institution(institution_id: int | None = None) -> list[InstitutionCapacity]:
    """Allocated from the live services' sizes, used from the latest samples and last hour."""
    policies = current_app.extensions["policies"]
    latest = usage.latest_by_service()
    rates = cpu_rates()
    institutions = select(Institution).order_by(Institution.acronym)
    services = select(Service).where(Service.status.in_(LIVE))
    if institution_id is not None:  # one institution's page: read only its rows
        institutions = institutions.where(Institution.id == institution_id)
        services = services.where(Service.institution_id == institution_id)
    table = {i.id: InstitutionCapacity(i) for i in db.session.scalars(institutions)}
    for svc in db.session.scalars(services):
        row = table.get(svc.institution_id)
        if row is None:
            continue
        row.services += 1
        try:
            size = policies.size(svc.kind, svc.size)
        except KeyError:
            continue
        row.allocated.cpu += size.cpu
        row.allocated.memory += size.memory_bytes
        row.allocated.disk += size.disk_bytes
        sample = latest.get(svc.id)
        if sample is not None and svc.status == "running":
            row.used.memory += sample.memory_bytes or 0
            row.used.disk += sample.disk_used or 0
        row.used.cpu += rates.get(svc.id, 0.0)
    return list(table.values())


def totals(rows: list[InstitutionCapacity]) -> tuple[Figures, Figures]:
    allocated, used = Figures(), Figures()
    for r in rows:
        allocated.cpu += r.allocated.cpu
        allocated.memory += r.allocated.memory
        allocated.disk += r.allocated.disk
        used.cpu += r.used.cpu
        used.memory += r.used.memory
        used.disk += r.used.disk
    return allocated, used
