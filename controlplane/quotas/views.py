"""Quotas in the portal: increase requests, plans per institution, plan edits, exceptions."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

import policies as pol
from controlplane.accounts.roles import role_required
from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Institution, PlanOverride, QuotaGrant
from controlplane.core.transitions import LifecycleError
from controlplane.quotas import allocation as quotas
from controlplane.quotas.forms import PlanForm, QuotaIncreaseForm
from controlplane.requests.lifecycle import submit_quota_increase

bp = Blueprint("quota", __name__)


def _resource_choices() -> list[tuple[str, str]]:
    loc = quotas.locale()
    names = ["cpu", "memory_mib", "disk_mib", "mailboxes", "mail_storage_mib"] + \
        [f"services.{k}" for k in pol.KINDS]
    return [(n, pol.resource_label(n, loc)) for n in names]


@bp.route("/portal/quota/new", methods=["GET", "POST"])
@role_required("focal_point")
def new_increase():
    """Ask for more of one resource, with a justification."""
    form = QuotaIncreaseForm()
    form.resource.choices = _resource_choices()
    if form.validate_on_submit():
        try:
            req = submit_quota_increase(current_user, form.resource.data, form.amount.data,
                                        form.justification.data, form.ends_on.data)
        except LifecycleError as exc:
            form.form_errors.append(str(exc.message))
        else:
            flash(_("Your request was submitted; the data centre will review it."), "success")
            return redirect(url_for("requests.request_detail", request_id=req.id))
    status = 422 if form.errors or form.form_errors else 200
    return render_template("quotas/increase.html", form=form,
                           quota=quotas.summary(current_user.institution)), status


@bp.route("/ops/institutions/<int:institution_id>", methods=["GET", "POST"])
@role_required("operator", "auditor")
def institution(institution_id: int):
    """An institution's plan, allocation, exceptions; operators move it to another plan."""
    inst = db.get_or_404(Institution, institution_id)
    form = PlanForm()
    plans = quotas.policies().plans
    form.plan.choices = [(n, p.display(quotas.locale())) for n, p in plans.items()]
    problems: list[str] = []
    if request.method == "POST":
        if not current_user.is_operator:
            abort(403)
        if form.validate_on_submit():
            if form.plan.data not in plans:
                problems = [_("Unknown plan.")]
            else:
                quotas.lock(inst.id)
                inst = db.session.get(Institution, institution_id)
                problems = quotas.plan_change_problems(inst, form.plan.data)
                if not problems:
                    before = {"plan": inst.plan_name}
                    inst.plan = form.plan.data
                    audit.record("institution.plan_changed", inst, actor=current_user,
                                 before=before, after={"plan": inst.plan_name})
                    db.session.commit()
                    flash(_("Plan changed."), "success")
                    return redirect(url_for("quota.institution", institution_id=inst.id))
                db.session.rollback()
                inst = db.session.get(Institution, institution_id)
    form.plan.data = form.plan.data or inst.plan_name
    grants = db.session.scalars(select(QuotaGrant).where(QuotaGrant.institution_id == inst.id)
                                .order_by(QuotaGrant.created_at.desc())).all()
    return render_template("quotas/institution.html", inst=inst, form=form, problems=problems,
                           quota=quotas.summary(inst), grants=grants,
                           plan=quotas.plan(inst.plan_name)), (409 if problems else 200)


@bp.route("/ops/plans", methods=["GET", "POST"])
@role_required("operator", "auditor")
def plans():
    """Every plan's limits; operators edit them (refused if an institution would be over)."""
    policies = quotas.policies()
    problems: list[str] = []
    form = ActionForm()
    if request.method == "POST":
        if not current_user.is_operator:
            abort(403)
        name = request.form.get("plan", "")
        if name not in policies.plans or not form.validate_on_submit():
            abort(404)
        current = quotas.plan(name)
        values = current.quota.to_dict()
        try:
            for field in ("cpu", "memory_mib", "disk_mib", "mailboxes", "mail_storage_mib"):
                raw = request.form.get(field, "").strip().replace(",", ".")
                number = float(raw) if field == "cpu" else int(raw)
                if number < 0 or number > 10**9:
                    raise ValueError(field)
                values[field] = number
            for kind in pol.KINDS:
                number = int(request.form.get(f"services.{kind}", "").strip())
                if number < 0 or number > 10**6:
                    raise ValueError(kind)
                values.setdefault("services", {})[kind] = number
        except ValueError:
            problems = [_("Every limit must be a number of 0 or more (CPU in cores, e.g. 2,5; "
                          "memory and disk in MiB).")]
        if not problems:
            edited = pol.Plan(name=name, title=current.title,
                              quota=pol.Resources.from_dict(values))
            for inst in db.session.scalars(select(Institution)):
                if inst.plan_name == name:
                    problems += [f"{inst.acronym} — {p}"
                                 for p in quotas.plan_change_problems(inst, edited)]
        if not problems:
            override = db.session.get(PlanOverride, name)
            before = override.quota if override else current.quota.to_dict()
            if override is None:
                override = PlanOverride(name=name, quota=values, updated_by=current_user.username)
                db.session.add(override)
            else:
                override.quota, override.updated_by = values, current_user.username
            db.session.flush()
            audit.record("plan.edited", override, actor=current_user,
                         before=dict(before, plan=name), after=dict(values, plan=name))
            db.session.commit()
            flash(_("Plan “%(name)s” saved.", name=current.display(quotas.locale())), "success")
            return redirect(url_for("quota.plans"))
    rows = [(name, quotas.plan(name)) for name in policies.plans]
    return render_template("quotas/plans.html", rows=rows, kinds=pol.KINDS, form=form,
                           problems=problems, locale=quotas.locale()), (409 if problems else 200)


@bp.route("/audit/quota-grants")
@role_required("auditor", "operator")
def grants():
    """Every exception to a plan: who asked, who approved, until when."""
    rows = db.session.scalars(select(QuotaGrant).order_by(QuotaGrant.created_at.desc())).all()
    return render_template("quotas/grants.html", grants=rows,
                           label=lambda r: pol.resource_label(r, quotas.locale()))
