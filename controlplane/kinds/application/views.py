"""The Images page: what the institution's registry namespace holds (operators: every
namespace), its size against the registry quota, deletion, and `docker save` archive uploads."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from controlplane.accounts.roles import role_required
from controlplane.core.forms import ActionForm
from controlplane.kinds.application import image_uploads
from controlplane.kinds.application.forms import ImageUploadForm
from controlplane.registry import access
from provisioners.registry.api import RegistryError

log = logging.getLogger(__name__)
bp = Blueprint("applications", __name__, url_prefix="/portal")


def _page(form: ImageUploadForm | None, error: str | None = None, status: int = 200):
    images, uses, unavailable = [], [], False
    try:
        images, uses = image_uploads.listing(current_user)
    except RegistryError as exc:
        log.warning("event=images.registry_unavailable error=%s", exc)
        unavailable = True
    except image_uploads.Refused as exc:  # an institution without a namespace of its own
        error = error or str(exc)
    namespace = None
    if current_user.is_focal_point:
        namespace = access.namespace_of(current_user.institution.acronym)
    html = render_template(
        "kinds/application/images.html", form=form, error=error, images=images, uses=uses,
        unavailable=unavailable, action_form=ActionForm(), namespace=namespace,
        deletable={use.namespace for use in uses if use.institution is not None},
        registry=image_uploads.registry_address(),
        name=request.form.get("name", "") if request.method == "POST" else "")
    return html, status, {"Cache-Control": "no-store"}


@bp.route("/images", methods=["GET"])
@role_required("focal_point", "operator")
def images():
    """The registry's images as this person may see them; the upload form for focal points."""
    return _page(ImageUploadForm() if current_user.is_focal_point else None)


@bp.route("/images", methods=["POST"])
@role_required("focal_point")
def upload_image():
    """Upload a `docker save` archive; a worker imports it into the institution's namespace."""
    form = ImageUploadForm()
    if not form.validate_on_submit():
        return _page(form, status=422)
    storage = form.archive.data
    try:
        task = image_uploads.accept(current_user, storage.stream, storage.filename or "",
                                    name=request.form.get("name", ""))
    except ValueError as exc:
        return _page(form, _("Upload refused: %(error)s", error=str(exc)), 422)
    return redirect(url_for("tasks.task_page", task_id=task.id))


@bp.route("/images/delete", methods=["POST"])
@role_required("focal_point", "operator")
def delete_image():
    """Delete an image by digest (all its tags); focal points their namespace's, operators any
    institution's."""
    if not ActionForm().validate_on_submit():
        abort(400)
    repository = request.form.get("repository", "")
    digest = request.form.get("digest", "")
    try:
        tags = image_uploads.delete(current_user, repository, digest)
    except image_uploads.NotVisible:
        abort(404)
    except image_uploads.Refused as exc:
        abort(403, str(exc))
    except RegistryError as exc:
        log.warning("event=images.delete_failed repository=%s error=%s", repository, exc)
        flash(_("The registry could not delete this image; try again in a few minutes."),
              "error")
    else:
        flash(_("Image %(repository)s@%(digest)s deleted (tags: %(tags)s).",
                repository=repository, digest=digest[:19], tags=", ".join(tags) or "—"),
              "success")
    return redirect(url_for("applications.images"))
