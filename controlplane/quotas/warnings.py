"""Warnings when use crosses a threshold of policies/: per service disk, per institution quota."""
from __future__ import annotations

from sqlalchemy import select

import policies as pol
from controlplane.core.extensions import db
from controlplane.core.models import Institution, Mailbox, Service
from controlplane.monitoring import usage
from controlplane.monitoring.alerts import clear_alert, raise_alert
from controlplane.quotas import allocation


def check_warnings() -> int:
    """Alert focal points and operators when use crosses a warning threshold of policies/."""
    thresholds = allocation.policies().warning_threshold
    raised = 0
    latest = usage.latest_by_service()
    for svc in db.session.scalars(select(Service).where(Service.status.in_(("running",
                                                                            "stopped")))):
        sample = latest.get(svc.id)
        key = f"quota:service:{svc.id}:disk"
        try:
            size = allocation.policies().size(svc.kind, svc.size)
        except KeyError:
            continue
        found = []
        if sample is not None and sample.disk_used is not None:
            found = pol.warnings(pol.Resources(disk_mib=int(sample.disk_used // 2**20)),
                                 pol.Resources(disk_mib=size.disk_mib), thresholds)
        if found:
            raise_alert("quota_warning", key, f"{svc.hostname or svc.name}: "
                        + pol.format_warning(found[0], "fr"), service=svc)
            raised += 1
        else:
            clear_alert(key)
    for inst in db.session.scalars(select(Institution)):
        held = allocation.allocated(inst.id)
        used_mail = sum(m.used_bytes or 0 for m in db.session.scalars(select(Mailbox).where(
            Mailbox.institution_id == inst.id)))
        held = held.with_value("mail_storage_mib", int(used_mail // 2**20)) \
            if used_mail else held
        found = pol.warnings(held, allocation.effective(inst), thresholds)
        keys = set()
        for warning in found:
            key = f"quota:institution:{inst.id}:{warning.resource}"
            keys.add(key)
            raise_alert("quota_warning", key, f"{inst.acronym}: "
                        + pol.format_warning(warning, "fr"), institution_id=inst.id)
            raised += 1
        for res in allocation.ROWS:
            key = f"quota:institution:{inst.id}:{res}"
            if key not in keys:
                clear_alert(key)
    db.session.commit()
    return raised
