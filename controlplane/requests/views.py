"""Focal points: their institution's services and requests, and new requests."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from controlplane.accounts.views import role_required
from controlplane.core.extensions import db
from controlplane.kinds import registry as kinds
from controlplane.requests.lifecycle import LifecycleError, submit_request
from controlplane.core.models import Request, Service

bp = Blueprint("portal", __name__, url_prefix="/portal")


@bp.route("/")
@role_required("focal_point")
def index():
    """The institution's services and requests."""
    inst_id = current_user.institution_id
    services = db.session.scalars(select(Service).where(
        Service.institution_id == inst_id, Service.status != "deleted").order_by(Service.id)).all()
    requests_ = db.session.scalars(select(Request).where(
        Request.institution_id == inst_id).order_by(Request.id.desc()).limit(50)).all()
    return render_template("requests/portal.html", services=services, requests=requests_)


@bp.route("/requests/new/<kind>", methods=["GET", "POST"])
@role_required("focal_point")
def new_request(kind: str):
    """Ask for a service of one kind (website, database, application)."""
    spec = kinds.get(kind)
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
            return redirect(url_for("services.request_detail", request_id=req.id))
    status = 422 if form.errors or form.form_errors else 200
    from controlplane.quotas import allocation as quotas

    fits, quota = quotas.fits(current_user.institution, spec.name) \
        if spec.counts_against_quota else ([], quotas.summary(current_user.institution))
    return render_template("requests/new.html", form=form, kind=spec, fits=fits,
                           quota=quota), status


@bp.route("/images", methods=["GET", "POST"])
@role_required("focal_point")
def images():
    """Upload an application image archive (docker save) into the institution's namespace."""
    from controlplane.kinds.application import image_uploads as images_upload
    from controlplane.core.forms import ImageUploadForm
    from controlplane.kinds.application.kind import image_namespace

    form = ImageUploadForm()
    error = None
    if form.validate_on_submit():
        storage = form.archive.data
        try:
            task = images_upload.accept(current_user, storage.stream, storage.filename or "")
        except ValueError as exc:
            error = _("Upload refused: %(error)s", error=str(exc))
        else:
            return redirect(url_for("reports.task_page", task_id=task.id))
    return render_template("kinds/application/images.html", form=form, error=error,
                           namespaces=image_namespace(current_user.institution)), \
        (422 if error or form.errors else 200)
