"""Quotas against the database: what an institution holds, its plan, decisions, warnings."""
from __future__ import annotations

import logging
from dataclasses import replace

from flask import current_app
from flask_babel import get_locale
from sqlalchemy import select, update

import policies as pol
from controlplane.core.extensions import db
from controlplane.core.models import (
    Institution,
    Mailbox,
    PlanOverride,
    QuotaGrant,
    Request,
    Service,
)

log = logging.getLogger(__name__)


def policies() -> pol.Policies:
    return current_app.extensions["policies"]


def locale() -> str:
    try:
        return str(get_locale() or "fr")
    except Exception:  # noqa: BLE001 - outside a request
        return "fr"


def plan(name: str) -> pol.Plan:
    """The plan from policies/plans.yaml with the operators' override applied."""
    base = policies().plan(name)
    override = db.session.get(PlanOverride, name)
    if override is None:
        return base
    return replace(base, quota=pol.Resources.from_dict(override.quota))


def lock(institution_id: int) -> None:
    """Take the institution's row lock in a fresh transaction before counting its quota.

    Ending the current transaction first matters on SQLite: a transaction that has read an
    older snapshot cannot be upgraded to a writer; a new one that writes first can (it waits
    for the other writer). On PostgreSQL the UPDATE takes the row lock until commit.
    """
    db.session.commit()
    db.session.execute(update(Institution).where(Institution.id == institution_id)
                       .values(lock_version=Institution.lock_version + 1))


def held_items(institution_id: int, *, exclude_request: int | None = None) -> list:
    """Everything that counts against the quota: live services, waiting requests, mailboxes."""
    counted = list(pol.KINDS)  # kinds without containers (official mail) hold nothing
    items: list = list(db.session.scalars(select(Service).where(
        Service.institution_id == institution_id, Service.status != "deleted",
        Service.kind.in_(counted))))
    waiting = select(Request).where(Request.institution_id == institution_id,
                                    Request.status == "submitted",
                                    Request.kind.in_(counted))
    for req in db.session.scalars(waiting):
        if req.id != exclude_request:
            item = {"kind": req.kind, "size": req.size, "status": req.status}
            if (req.params or {}).get("current_size"):
                item["current_size"] = req.params["current_size"]
            items.append(item)
    for box in db.session.scalars(select(Mailbox).where(Mailbox.institution_id == institution_id,
                                                        Mailbox.is_alias.is_(False))):
        items.append({"kind": "mailbox", "mail_mib": box.quota_mib, "status": "running"})
    return items


def allocated(institution_id: int, **kwargs) -> pol.Resources:
    return pol.allocation_of(held_items(institution_id, **kwargs), policies())


def grants(institution_id: int) -> list[QuotaGrant]:
    return list(db.session.scalars(select(QuotaGrant).where(
        QuotaGrant.institution_id == institution_id, QuotaGrant.revoked_at.is_(None))))


def effective(inst: Institution) -> pol.Resources:
    return pol.effective_quota(plan(inst.plan_name), grants(inst.id))  # overrides included


def decide(inst: Institution, request: dict, *, exclude_request: int | None = None
           ) -> pol.Decision:
    """The policy decision for a new item of `inst` (call after `lock`)."""
    return pol.check_request(policies(), plan(inst.plan_name),
                             allocated(inst.id, exclude_request=exclude_request),
                             grants(inst.id), request)


def fits(inst: Institution, kind: str) -> tuple[list, list[dict]]:
    """For the request form: the decision for each size, and the quota rows, from one count."""
    held, current = allocated(inst.id), grants(inst.id)
    the_plan = plan(inst.plan_name)
    decisions = []
    for size in policies().size_names(kind):
        decision = pol.check_request(policies(), the_plan, held, current,
                                     {"kind": kind, "size": size})
        decisions.append((size, decision, explain(decision)))
    return decisions, summary(inst, held=held, quota=pol.effective_quota(the_plan, current))


def explain(decision: pol.Decision | dict) -> list[str]:
    if isinstance(decision, dict):
        decision = pol.Decision.from_dict(decision)
    return [pol.format_reason(r, locale()) for r in decision.reasons]


def plan_change_problems(inst: Institution, new_plan: pol.Plan | str) -> list[str]:
    reasons = pol.check_plan_change(policies(), new_plan if not isinstance(new_plan, str)
                                    else plan(new_plan), allocated(inst.id), grants(inst.id))
    return [pol.format_reason(r, locale()) for r in reasons]


ROWS = ("cpu", "memory_mib", "disk_mib", "mailboxes", "mail_storage_mib")


def summary(inst: Institution, *, held: pol.Resources | None = None,
            quota: pol.Resources | None = None) -> list[dict]:
    """Rows for the usage page: each resource with allocated, quota, percent and warning."""
    held = allocated(inst.id) if held is None else held
    quota = effective(inst) if quota is None else quota
    thresholds = policies().warning_threshold
    rows = []
    resources = list(ROWS) + [f"services.{k}" for k in pol.KINDS]
    for res in resources:
        have, limit = held.get(res), quota.get(res)
        percent = int(round(100 * have / limit)) if limit else 0
        rows.append({
            "resource": res,
            "label": pol.resource_label(res, locale()) if hasattr(pol, "resource_label") else res,
            "allocated_text": pol.format_quantity(res, have, locale()),
            "quota_text": pol.format_quantity(res, limit, locale()),
            "used_text": "",
            "percent": percent,
            "warning": percent >= thresholds.get(res.split(".")[0], 101),
        })
    return rows
