"""Operators: the approval queue across institutions, every service, approve and reject."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from controlplane.accounts.roles import role_required
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Institution, Request, Service
from controlplane.core.transitions import LifecycleError
from controlplane.requests.forms import RejectForm
from controlplane.requests.lifecycle import approve_request, reject_request

bp = Blueprint("ops", __name__, url_prefix="/ops")


@bp.route("/")
@role_required("operator")
def queue():
    """Submitted requests from every institution, oldest first."""
    pending = db.session.scalars(select(Request).where(Request.status == "submitted")
                                 .order_by(Request.created_at)).all()
    failed = db.session.scalars(select(Service).where(Service.status == "failed")
                                .order_by(Service.updated_at.desc())).all()
    return render_template("requests/queue.html", pending=pending, failed=failed,
                           form=ActionForm(), reject_form=RejectForm())


@bp.route("/services")
@role_required("operator", "auditor")
def services():
    """Every service of every institution, filterable by status."""
    status = request.args.get("status") or None
    query = select(Service).order_by(Service.institution_id, Service.id)
    if status:
        query = query.where(Service.status == status)
    else:
        query = query.where(Service.status != "deleted")
    rows = db.session.scalars(query).all()
    return render_template("services/list.html", services=rows, status=status)


@bp.route("/institutions")
@role_required("operator", "auditor")
def institutions():
    """Institutions with their count of live services."""
    counts = dict(db.session.execute(select(Service.institution_id, func.count(Service.id))
                                     .where(Service.status != "deleted")
                                     .group_by(Service.institution_id)).all())
    rows = db.session.scalars(select(Institution).order_by(Institution.acronym)).all()
    return render_template("requests/institutions.html", institutions=rows, counts=counts)


@bp.route("/requests/<int:request_id>/approve", methods=["POST"])
@role_required("operator")
def approve(request_id: int):
    """Approve a submitted request and start provisioning."""
    req = db.get_or_404(Request, request_id)
    if ActionForm().validate_on_submit():
        try:
            svc = approve_request(current_user, req)
        except LifecycleError as exc:
            flash(str(exc.message), "error")
        else:
            if svc is not None:
                flash(_("Request #%(id)s approved; provisioning has started.", id=req.id),
                      "success")
                return redirect(url_for("services.service_detail", service_id=svc.id))
            if req.status == "submitted":
                flash(_("Your approval is recorded; another operator must approve too."), "info")
            else:
                flash(_("Request #%(id)s approved.", id=req.id), "success")
    return redirect(url_for("requests.request_detail", request_id=req.id))


@bp.route("/requests/<int:request_id>/reject", methods=["POST"])
@role_required("operator")
def reject(request_id: int):
    """Reject a submitted request with a reason the requester will read."""
    req = db.get_or_404(Request, request_id)
    form = RejectForm()
    if form.validate_on_submit():
        try:
            reject_request(current_user, req, form.reason.data)
        except LifecycleError as exc:
            flash(str(exc.message), "error")
        else:
            flash(_("Request #%(id)s rejected.", id=req.id), "success")
    else:
        flash(_("Give the reason for the rejection; the requester will see it."), "error")
    return redirect(url_for("requests.request_detail", request_id=req.id))


@bp.route("/requests")
@role_required("operator", "auditor")
def requests():
    """Every request of every institution, newest first."""
    status = request.args.get("status") or None
    query = select(Request).order_by(Request.id.desc()).limit(500)
    if status:
        query = query.where(Request.status == status)
    return render_template("requests/requests.html", requests=db.session.scalars(query).all())
