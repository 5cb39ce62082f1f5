"""Database services: reveal credentials (audited), rotate the password, back up, restore."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from controlplane.accounts.roles import role_required, scoped_get
from controlplane.audit import trail as audit
from controlplane.backups import jobs as backups
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Backup, Service
from controlplane.kinds import registry as kinds
from controlplane.kinds.database.jobs import enqueue_rotation
from controlplane.kinds.database.kind import DATABASE_KINDS
from controlplane.services import credentials
from controlplane.worker.queue import QueueUnavailable

bp = Blueprint("databases", __name__)
def _database(service_id: int) -> Service:
    svc = scoped_get(Service, service_id)
    if svc.kind not in DATABASE_KINDS:
        abort(404)
    return svc


@bp.route("/services/<int:service_id>/credentials", methods=["POST"])
@role_required("focal_point")
def reveal(service_id: int):
    """Show the connection settings and password once; the reveal is recorded."""
    svc = _database(service_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    password = credentials.get(svc, "password")
    if password is None:
        flash(_("The credentials are created with the database; try again once it runs."),
              "error")
        return redirect(url_for("services.service_detail", service_id=svc.id))
    audit.record("service.credentials_revealed", svc, actor=current_user)
    db.session.commit()
    info = kinds.get(svc.kind).connection(svc, password)
    response = render_template("kinds/database/credentials.html", svc=svc, info=info)
    return response, 200, {"Cache-Control": "no-store"}


@bp.route("/services/<int:service_id>/rotate", methods=["POST"])
@role_required("focal_point", "operator")
def rotate(service_id: int):
    """Give the database user a new password (and the applications bound to it)."""
    svc = _database(service_id)
    if ActionForm().validate_on_submit():
        if svc.status != "running":
            flash(_("The database must be running to change its password."), "error")
        else:
            audit.record("service.rotation_requested", svc, actor=current_user)
            db.session.commit()
            try:
                enqueue_rotation(svc)
            except QueueUnavailable:
                flash(_("The job queue is unavailable; try again in a few minutes."), "error")
            else:
                flash(_("The password is being changed; reveal it again in a moment."),
                      "success")
    return redirect(url_for("services.service_detail", service_id=svc.id))


@bp.route("/services/<int:service_id>/backups", methods=["POST"])
@role_required("focal_point", "operator")
def backup_now(service_id: int):
    """Take a backup now."""
    svc = _database(service_id)
    if ActionForm().validate_on_submit():
        if svc.status != "running":
            flash(_("The database must be running to be backed up."), "error")
        else:
            audit.record("service.backup_requested", svc, actor=current_user)
            db.session.commit()
            try:
                backups.enqueue_backup(svc, "manual")
            except QueueUnavailable:
                flash(_("The job queue is unavailable; try again in a few minutes."), "error")
            else:
                flash(_("The backup is being taken."), "success")
    return redirect(url_for("services.service_detail", service_id=svc.id))


@bp.route("/services/<int:service_id>/backups/<int:backup_id>/restore", methods=["POST"])
@role_required("focal_point", "operator")
def restore(service_id: int, backup_id: int):
    """Replace the database's content with a backup."""
    svc = _database(service_id)
    backup = db.session.get(Backup, backup_id)
    if backup is None or backup.service_id != svc.id:
        abort(404)
    if ActionForm().validate_on_submit():
        if svc.status != "running":
            flash(_("The database must be running to be restored."), "error")
        else:
            audit.record("service.restore_requested", svc, actor=current_user,
                         after={"backup": backup.id})
            db.session.commit()
            try:
                backups.enqueue_restore(svc, backup)
            except QueueUnavailable:
                flash(_("The job queue is unavailable; try again in a few minutes."), "error")
            else:
                flash(_("The backup is being restored."), "success")
    return redirect(url_for("services.service_detail", service_id=svc.id))


def backups_of(svc: Service) -> list[Backup]:
    return list(db.session.scalars(select(Backup).where(Backup.service_id == svc.id)
                                   .order_by(Backup.created_at.desc()).limit(20)))
