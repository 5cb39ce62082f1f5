"""Requests for hosting: submission under the institution's quota lock, decisions, grants."""
from __future__ import annotations

import logging
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

import policies as pol
from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.models import (
    Account,
    Approval,
    Institution,
    QuotaGrant,
    Request,
    Service,
    utcnow,
)
from controlplane.core.transitions import LifecycleError
from controlplane.kinds import registry as kinds
from controlplane.kinds.checks import check_size
from controlplane.quotas import allocation as quotas
from controlplane.requests.states import REQUEST_FIELDS, set_request_status
from controlplane.services.actions import enqueue_action
from controlplane.services.states import SERVICE_ACTIONS, SERVICE_FIELDS, set_service_status

log = logging.getLogger(__name__)


def submit_request(actor: Account, kind_name: str, data: dict) -> Request:
    """Validate, check the quota under the institution's lock, record; approve if the rules say so."""
    inst = actor.institution
    if inst is None or not actor.is_focal_point:
        raise LifecycleError(_l("Only an institution's focal points can request hosting."))
    kind = kinds.find(kind_name)
    if kind is None or (kind.counts_against_quota
                        and not quotas.policies().kind_enabled(kind_name)):
        raise LifecycleError(_l("Unknown kind of service “%(kind)s”.", kind=kind_name))
    clean = kind.clean(data, inst)
    actor_id, inst_id = actor.id, inst.id
    quotas.lock(inst_id)
    inst = db.session.get(Institution, inst_id)
    if kind.counts_against_quota:
        decision = quotas.decide(inst, {"kind": kind.name, "size": clean["size"]})
    else:
        decision = pol.Decision(allowed=True, automatic=False, approvals_needed=1,
                                rule="operator", reasons=())
    if not decision.allowed:
        db.session.rollback()
        raise LifecycleError(_l("Refused by the quota: %(reasons)s",
                                reasons="; ".join(quotas.explain(decision))))
    req = Request(institution_id=inst_id, author_id=actor_id, kind=kind.name,
                  hostname=clean.get("hostname"), name=clean.get("name"), size=clean["size"],
                  params=clean.get("params") or {}, status="submitted",
                  decision=decision.to_dict())
    db.session.add(req)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise LifecycleError(_l("%(host)s is already used or requested; choose another name.",
                                host=clean.get("hostname") or clean.get("name")),
                             field="hostname" if clean.get("hostname") else "name") from None
    audit.record("request.submitted", req, actor=db.session.get(Account, actor_id),
                 after=dict(audit.snapshot(req, REQUEST_FIELDS), decision=req.decision))
    db.session.commit()
    log.info("event=request.submitted request=%s institution=%s kind=%s rule=%s", req.id,
             inst.acronym, kind.name, decision.rule)
    if decision.automatic:
        approve_request(None, req)
    return req


def submit_resize(actor: Account, svc: Service, size: str) -> Request:
    """Ask for another size of a service; only the increase counts against the quota."""
    if not actor.is_focal_point or svc.institution_id != actor.institution_id:
        raise LifecycleError(_l("Only an institution's focal points can request hosting."))
    if "resize" not in SERVICE_ACTIONS.get(svc.status, set()) or svc.pending_action:
        raise LifecycleError(_l("This action is not possible while the status is “%(status)s”.",
                                status=svc.status))
    size = check_size(svc.kind, size)
    if size == svc.size:
        raise LifecycleError(_l("The service already has size %(size)s.", size=size),
                             field="size")
    policies = quotas.policies()
    if policies.size(svc.kind, size).disk_mib < policies.size(svc.kind, svc.size).disk_mib:
        raise LifecycleError(_l("A service’s disk cannot shrink (its filesystem has a hard "
                                "size): choose a size with at least as much disk, or create a "
                                "new service and move the data."), field="size")
    svc_id, actor_id, inst_id = svc.id, actor.id, svc.institution_id
    quotas.lock(inst_id)
    svc = db.session.get(Service, svc_id)
    open_resize = db.session.scalar(select(Request.id).where(
        Request.status == "submitted", Request.kind == svc.kind,
        Request.institution_id == inst_id).where(
        Request.params["resize_of"].as_integer() == svc_id))
    if open_resize is not None:
        db.session.rollback()
        raise LifecycleError(_l("A resize of this service is already waiting for approval."))
    demand = {"kind": svc.kind, "size": size, "current_size": svc.size}
    decision = quotas.decide(db.session.get(Institution, inst_id), demand)
    if not decision.allowed:
        db.session.rollback()
        raise LifecycleError(_l("Refused by the quota: %(reasons)s",
                                reasons="; ".join(quotas.explain(decision))), field="size")
    req = Request(institution_id=inst_id, author_id=actor_id, kind=svc.kind, size=size,
                  name=svc.hostname or svc.name,
                  params={"resize_of": svc_id, "current_size": svc.size}, status="submitted",
                  decision=decision.to_dict())
    db.session.add(req)
    db.session.flush()
    audit.record("request.submitted", req, actor=db.session.get(Account, actor_id),
                 after=dict(audit.snapshot(req, REQUEST_FIELDS), params=req.params,
                            decision=req.decision))
    db.session.commit()
    if decision.automatic:
        approve_request(None, req)
    return req


def submit_quota_increase(actor: Account, resource: str, amount, justification: str,
                          ends_on=None) -> Request:
    """Ask for more of one resource (an exception to the plan); two operators decide."""
    inst = actor.institution
    if inst is None or not actor.is_focal_point:
        raise LifecycleError(_l("Only an institution's focal points can request hosting."))
    decision = pol.check_quota_increase(quotas.policies(), resource, amount, justification or "",
                                        ends_on=ends_on)
    if not decision.allowed:
        raise LifecycleError(_l("Refused: %(reasons)s",
                                reasons="; ".join(quotas.explain(decision))))
    value, _problem = pol.parse_amount(resource, amount)
    req = Request(institution_id=inst.id, author_id=actor.id, kind="quota_increase", size="-",
                  params={"resource": resource, "amount": value,
                          "justification": justification.strip(),
                          "ends_on": ends_on.isoformat() if ends_on else None},
                  status="submitted", decision=decision.to_dict())
    db.session.add(req)
    db.session.flush()
    audit.record("request.submitted", req, actor=actor,
                 after=dict(audit.snapshot(req, REQUEST_FIELDS), params=req.params,
                            decision=req.decision))
    db.session.commit()
    return req


def submit_website(actor: Account, hostname: str, size: str) -> Request:
    return submit_request(actor, "website", {"hostname": hostname, "size": size})


def cancel_request(actor: Account, req: Request) -> None:
    if req.author_id != actor.id:
        raise LifecycleError(_l("Only the author of a request can cancel it."))
    if req.status != "submitted":
        raise LifecycleError(_l("Only a request that is still waiting for approval can be "
                                "cancelled."))
    set_request_status(req, "cancelled", actor=actor)
    db.session.commit()


def reject_request(actor: Account, req: Request, reason: str) -> None:
    reason = (reason or "").strip()
    if not reason:
        raise LifecycleError(_l("Give the reason for the rejection; the requester will see it."),
                             field="reason")
    if req.status != "submitted":
        raise LifecycleError(_l("This request was already decided."))
    set_request_status(req, "rejected", actor=actor, reason=reason, decided_by_id=actor.id,
                       decided_at=utcnow())
    db.session.commit()


def approve_request(actor: Account | None, req: Request) -> Service | None:
    """Record an operator's approval (None = the rules approved it); act once enough agree.

    Returns the new service, or None when more approvals are needed or nothing is created.
    """
    if req.status != "submitted":
        raise LifecycleError(_l("This request was already decided."))
    if actor is not None:
        done = {a.account_id for a in db.session.scalars(
            select(Approval).where(Approval.request_id == req.id))}
        if actor.id in done:
            raise LifecycleError(_l("You already approved this request; another operator "
                                    "must approve it too."))
        db.session.add(Approval(request_id=req.id, account_id=actor.id))
        audit.record("request.approval", req, actor=actor, after={"approver": actor.username})
        decision = pol.Decision.from_dict(req.decision) if req.decision else None
        needed = decision.approvals_missing(done | {actor.id}, requester=req.author_id) \
            if decision else 0
        if needed > 0:
            db.session.commit()
            return None
    set_request_status(req, "approved", actor=actor, decided_by_id=actor.id if actor else None,
                       decided_at=utcnow())
    if req.kind == "quota_increase":
        _grant(req)
        db.session.commit()
        return None
    if (req.params or {}).get("resize_of"):
        svc = db.session.get(Service, req.params["resize_of"])
        if svc is None or svc.status in ("deleting", "deleted"):
            set_request_status(req, "failed", error="service deleted")
            db.session.commit()
            return None
        set_service_status(svc, "provisioning", actor=actor, action="service.resized",
                           size=req.size, pending_action="provision", error=None)
        set_request_status(req, "active")
        db.session.commit()
        enqueue_action(svc, "provision")
        return svc
    svc = Service(institution_id=req.institution_id, request_id=req.id, kind=req.kind,
                  hostname=req.hostname, name=req.name, size=req.size,
                  params=dict(req.params or {}), status="provisioning",
                  pending_action="provision")
    db.session.add(svc)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise LifecycleError(_l("%(host)s is already in use by another service.",
                                host=req.hostname or req.name)) from None
    audit.record("service.created", svc, actor=actor, after=audit.snapshot(svc, SERVICE_FIELDS))
    db.session.commit()
    enqueue_action(svc, "provision")
    return svc


def approvals_of(req: Request) -> list[Approval]:
    return list(db.session.scalars(select(Approval).where(Approval.request_id == req.id)
                                   .order_by(Approval.at)))


def _grant(req: Request) -> QuotaGrant:
    params = req.params
    ends = params.get("ends_on")
    grant = QuotaGrant(institution_id=req.institution_id, request_id=req.id,
                       resource=params["resource"], amount=float(params["amount"]),
                       justification=params.get("justification", ""),
                       approvers=[a.account.username for a in approvals_of(req)],
                       ends_on=date.fromisoformat(ends) if ends else None)
    db.session.add(grant)
    db.session.flush()
    audit.record("quota.granted", grant, after={"resource": grant.resource,
                                                "amount": grant.amount,
                                                "approvers": grant.approvers, "ends_on": ends})
    set_request_status(req, "active")
    return grant
