"""Auditors (and operators): the audit trail, read-only, with filters."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, render_template, request
from sqlalchemy import select

from controlplane.accounts.roles import role_required
from controlplane.audit.trail import verify as verify_chain
from controlplane.core.extensions import db
from controlplane.core.models import AuditEvent, Institution

bp = Blueprint("audit", __name__, url_prefix="/audit")
PAGE = 100


def _date(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y-%m-%d") if value else None
    except ValueError:
        return None


@bp.route("/")
@role_required("auditor", "operator")
def events():
    """The audit trail, newest first, filtered by institution, actor, action and period."""
    args = request.args
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if args.get("institution", "").isdigit():
        query = query.where(AuditEvent.institution_id == int(args["institution"]))
    if args.get("actor"):
        query = query.where(AuditEvent.actor == args["actor"].strip())
    if args.get("action"):
        query = query.where(AuditEvent.action.startswith(args["action"].strip()))
    start, end = _date(args.get("from")), _date(args.get("to"))
    if start:
        query = query.where(AuditEvent.at >= start)
    if end:
        query = query.where(AuditEvent.at < end.replace(hour=23, minute=59, second=59))
    page = max(int(args["page"]), 1) if args.get("page", "").isdigit() else 1
    rows = db.session.scalars(query.offset((page - 1) * PAGE).limit(PAGE + 1)).all()
    institutions = db.session.scalars(select(Institution).order_by(Institution.acronym)).all()
    return render_template("audit/events.html", events=rows[:PAGE], more=len(rows) > PAGE,
                           page=page, institutions=institutions, args=args)


@bp.route("/verify")
@role_required("auditor", "operator")
def verify():
    """Recompute the hash chain and say whether the trail was altered, and where."""
    result = verify_chain()
    return render_template("audit/verify.html", result=result)
