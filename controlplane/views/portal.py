"""Focal points: their institution's services and requests, and new requests."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from ..auth import role_required
from ..extensions import db
from ..forms import WebsiteRequestForm
from ..lifecycle import LifecycleError, submit_website
from ..models import Request, Service

bp = Blueprint("portal", __name__, url_prefix="/portal")


def size_choices(kind: str) -> list[tuple[str, str]]:
    sizes = current_app.extensions["policies"].sizes[kind]
    return [(name, _("%(name)s — %(cpu)s CPU, %(mem)s MiB memory, %(disk)s MiB disk",
                     name=name, cpu=s.cpu, mem=s.memory_mib, disk=s.disk_mib))
            for name, s in sizes.items()]


@bp.route("/")
@role_required("focal_point")
def index():
    """The institution's services and requests."""
    inst_id = current_user.institution_id
    services = db.session.scalars(select(Service).where(
        Service.institution_id == inst_id, Service.status != "deleted").order_by(Service.id)).all()
    requests_ = db.session.scalars(select(Request).where(
        Request.institution_id == inst_id).order_by(Request.id.desc()).limit(50)).all()
    return render_template("portal/index.html", services=services, requests=requests_)


@bp.route("/requests/new/website", methods=["GET", "POST"])
@role_required("focal_point")
def new_website():
    """Ask for a static website under the institution's domain."""
    form = WebsiteRequestForm()
    form.size.choices = size_choices("website")
    if form.validate_on_submit():
        try:
            req = submit_website(current_user, form.hostname.data, form.size.data)
        except LifecycleError as exc:
            target = getattr(form, exc.field or "", None)
            if target is not None:
                target.errors = list(target.errors) + [str(exc.message)]
            else:
                flash(str(exc.message), "error")
        else:
            flash(_("Your request was submitted; the data centre will review it."), "success")
            return redirect(url_for("services.request_detail", request_id=req.id))
    elif not form.hostname.data:
        form.hostname.data = f"www.{current_user.institution.domain}"
    status = 422 if form.errors else 200
    return render_template("portal/new_website.html", form=form), status
