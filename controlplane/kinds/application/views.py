"""Focal points upload application image archives into their institution's namespace."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from controlplane.accounts.roles import role_required
from controlplane.kinds.application import image_uploads
from controlplane.kinds.application.forms import ImageUploadForm
from controlplane.kinds.application.kind import image_namespace

bp = Blueprint("applications", __name__, url_prefix="/portal")


@bp.route("/images", methods=["GET", "POST"])
@role_required("focal_point")
def images():
    """Upload an application image archive (docker save) into the institution's namespace."""
    form = ImageUploadForm()
    error = None
    if form.validate_on_submit():
        storage = form.archive.data
        try:
            task = image_uploads.accept(current_user, storage.stream, storage.filename or "")
        except ValueError as exc:
            error = _("Upload refused: %(error)s", error=str(exc))
        else:
            return redirect(url_for("tasks.task_page", task_id=task.id))
    return render_template("kinds/application/images.html", form=form, error=error,
                           namespaces=image_namespace(current_user.institution)), \
        (422 if error or form.errors else 200)
