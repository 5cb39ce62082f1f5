"""A service's page: its detail, live status, lifecycle actions, resize and content upload."""
from __future__ import annotations

import os
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from controlplane.accounts.roles import role_required, scoped_get
from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import ContentUpload, Service
from controlplane.core.transitions import LifecycleError
from controlplane.kinds.registry import site_url
from controlplane.requests.lifecycle import submit_resize
from controlplane.services import content
from controlplane.services.actions import allowed_actions, request_service_action
from controlplane.services.archives import ArchiveError, receive_archive
from controlplane.services.forms import UploadForm
from controlplane.worker import queue

bp = Blueprint("services", __name__)


def _status_payload(svc: Service) -> dict:
    return {
        "id": svc.id,
        "status": svc.status,
        "status_label": _status_label(svc.status),
        "pending_action": svc.pending_action,
        "busy": bool(svc.pending_action) and svc.status != "failed",
        "error": svc.error,
        "url": site_url(svc) if svc.status in ("running", "stopped") else None,
        "status_changed_at": svc.status_changed_at.isoformat() + "Z",
    }


def _status_label(status: str) -> str:
    labels = {"provisioning": _("provisioning"), "running": _("running"),
              "stopped": _("stopped"), "deleting": _("deleting"), "deleted": _("deleted"),
              "failed": _("failed")}
    return labels.get(status, status)


@bp.route("/services/<int:service_id>")
@login_required
def service_detail(service_id: int):
    """A service: status, URL, content, actions and history."""
    svc = scoped_get(Service, service_id)
    events = audit.events_of("service", svc.id, newest_first=True, limit=30)
    uploads = db.session.scalars(select(ContentUpload).where(ContentUpload.service_id == svc.id)
                                 .order_by(ContentUpload.id.desc()).limit(5)).all()
    can_act = not current_user.is_auditor
    allowed = allowed_actions(svc)
    actions = sorted(allowed - {"resize"}) if can_act else []
    if svc.pending_action and svc.status != "failed":
        actions = []
    can_resize = current_user.is_focal_point and not svc.pending_action and "resize" in allowed
    sizes = current_app.extensions["policies"].size_names(svc.kind) if can_resize else []
    return render_template("services/service.html", svc=svc, events=events, uploads=uploads,
                           actions=actions, form=ActionForm(), upload_form=UploadForm(),
                           status=_status_payload(svc),
                           can_upload=can_act and svc.status in ("running", "stopped"),
                           sizes=sizes)


@bp.route("/services/<int:service_id>/status.json")
@login_required
def service_status(service_id: int):
    """Live status for the page's poller."""
    return jsonify(_status_payload(scoped_get(Service, service_id)))


@bp.route("/services/<int:service_id>/actions/<action>", methods=["POST"])
@role_required("focal_point", "operator")
def service_action(service_id: int, action: str):
    """Stop, start, delete or retry a service."""
    svc = scoped_get(Service, service_id)
    if action not in ("stop", "start", "delete", "retry"):
        abort(404)
    if ActionForm().validate_on_submit():
        try:
            request_service_action(current_user, svc, action)
        except LifecycleError as exc:
            flash(str(exc.message), "error")
        else:
            flash(_("Done: the platform is applying your request."), "success")
    return redirect(url_for("services.service_detail", service_id=svc.id))


@bp.route("/services/<int:service_id>/resize", methods=["POST"])
@role_required("focal_point")
def resize(service_id: int):
    """Ask for another size (checked against the quota; approval as the rules say)."""
    svc = scoped_get(Service, service_id)
    if ActionForm().validate_on_submit():
        try:
            req = submit_resize(current_user, svc, request.form.get("size", ""))
        except LifecycleError as exc:
            flash(str(exc.message), "error")
        else:
            flash(_("Your request was submitted; the data centre will review it."), "success")
            return redirect(url_for("requests.request_detail", request_id=req.id))
    return redirect(url_for("services.service_detail", service_id=svc.id))


@bp.route("/services/<int:service_id>/content", methods=["POST"])
@role_required("focal_point", "operator")
def upload_content(service_id: int):
    """Receive a site archive, take a quick look, and let a worker check it and put it in place."""
    svc = scoped_get(Service, service_id)
    form = UploadForm()
    if svc.status not in ("running", "stopped"):
        flash(_("Content can be uploaded once the site is running or stopped."), "error")
        return redirect(url_for("services.service_detail", service_id=svc.id))
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(_("Upload refused: %(error)s", error=error), "error")
        if not form.errors:
            flash(_("Choose an archive file to upload."), "error")
        return redirect(url_for("services.service_detail", service_id=svc.id))
    size = current_app.extensions["policies"].size(svc.kind, svc.size)
    storage = form.archive.data
    # Streamed to a file, then only a quick look: the deploy job checks every member.
    received = content.incoming_path(svc.id)
    received.parent.mkdir(parents=True, exist_ok=True)
    try:
        archive_bytes = receive_archive(
            storage.stream, received, max_bytes=int(current_app.config["UPLOAD_MAX_BYTES"]),
            max_unpacked=size.disk_bytes)
    except ArchiveError as exc:
        flash(_("Upload refused: %(error)s", error=exc.message), "error")
        return redirect(url_for("services.service_detail", service_id=svc.id))
    filename = os.path.basename(storage.filename or "archive")[:200]
    # files and size_bytes are counted by the deploy job, which reads every member
    upload = ContentUpload(service_id=svc.id, author_id=current_user.id, filename=filename,
                           size_bytes=0, files=0)
    db.session.add(upload)
    db.session.flush()
    path: Path = content.upload_path(upload)
    received.replace(path)
    audit.record("service.content_uploaded", svc, actor=current_user,
                 after={"upload": upload.id, "filename": filename,
                        "archive_bytes": archive_bytes})
    db.session.commit()
    try:
        content.enqueue_deploy(upload.id)
    except queue.QueueUnavailable:
        upload.status, upload.error = "failed", "job queue unavailable"
        db.session.commit()
        path.unlink(missing_ok=True)
        flash(_("The job queue is unavailable; try again in a few minutes."), "error")
    else:
        flash(_("Archive received; it is being checked, then published."), "success")
    return redirect(url_for("services.service_detail", service_id=svc.id))
