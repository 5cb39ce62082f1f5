"""Focal points' portal (their services and requests, new requests) and the request page."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from controlplane.accounts.roles import role_required, scoped_get
from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Request, Service
from controlplane.core.transitions import LifecycleError
from controlplane.kinds import registry as kinds
from controlplane.quotas import allocation as quotas
from controlplane.requests.forms import RejectForm
from controlplane.requests.lifecycle import approvals_of, cancel_request, submit_request

portal = Blueprint("portal", __name__, url_prefix="/portal")
bp = Blueprint("requests", __name__)


@portal.route("/")
@role_required("focal_point")
def index():
    """The institution's services and requests."""
    inst_id = current_user.institution_id
    services = db.session.scalars(select(Service).where(
        Service.institution_id == inst_id, Service.status != "deleted").order_by(Service.id)).all()
    requests_ = db.session.scalars(select(Request).where(
        Request.institution_id == inst_id).order_by(Request.id.desc()).limit(50)).all()
    return render_template("requests/portal.html", services=services, requests=requests_)


@portal.route("/requests/new/<kind>", methods=["GET", "POST"])
@role_required("focal_point")
def new_request(kind: str):
    """Ask for a service of one kind (website, database, application)."""
    spec = kinds.find(kind)
    if spec is None:
        abort(404)
    form = spec.form_class()
    institution = current_user.institution
    spec.prepare_form(form, institution)
    if form.validate_on_submit():
        data = {k: v for k, v in form.data.items() if k != "csrf_token"}
        try:
            req = submit_request(current_user, spec.name, data)
        except LifecycleError as exc:
            target = getattr(form, exc.field or "", None)
            if target is not None:
                target.errors = list(target.errors) + [str(exc.message)]
            else:
                form.form_errors.append(str(exc.message))
        else:
            flash(_("Your request was submitted; the data centre will review it."), "success")
            return redirect(url_for("requests.request_detail", request_id=req.id))
    status = 422 if form.errors or form.form_errors else 200
    fits, quota = quotas.fits(current_user.institution, spec.name) \
        if spec.counts_against_quota else ([], quotas.summary(current_user.institution))
    return render_template("requests/new.html", form=form, kind=spec, fits=fits,
                           quota=quota), status


@bp.route("/requests/<int:request_id>")
@login_required
def request_detail(request_id: int):
    """A request, its decision and what it became."""
    req = scoped_get(Request, request_id)
    events = audit.events_of("request", req.id)
    return render_template("requests/request.html", req=req, events=events, form=ActionForm(),
                           reject_form=RejectForm(), approvals=approvals_of(req))


@bp.route("/requests/<int:request_id>/cancel", methods=["POST"])
@role_required("focal_point")
def cancel(request_id: int):
    """Withdraw one's own request while it waits for approval."""
    req = scoped_get(Request, request_id)
    if ActionForm().validate_on_submit():
        try:
            cancel_request(current_user, req)
        except LifecycleError as exc:
            flash(str(exc.message), "error")
        else:
            flash(_("Request #%(id)s cancelled.", id=req.id), "success")
    return redirect(url_for("requests.request_detail", request_id=req.id))
