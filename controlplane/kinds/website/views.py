"""Websites: the SFTP password (the site's service account's), revealed to focal points, audited."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from controlplane.accounts.roles import role_required, scoped_get
from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Service
from controlplane.services import credentials
from provisioners.website import sftp

bp = Blueprint("sites", __name__)


@bp.route("/services/<int:service_id>/sftp-credentials", methods=["POST"])
@role_required("focal_point")
def reveal_sftp(service_id: int):
    """Show the SFTP address, user and password once; the reveal is recorded."""
    svc = scoped_get(Service, service_id)
    if svc.kind != "website":
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    password = credentials.get(svc, "service_account")
    port = (svc.params or {}).get("sftp_port")
    if (password is None or not port or not current_app.config["SFTP_ENABLED"]
            or svc.status in ("deleting", "deleted")):
        flash(_("SFTP access is set up with the site; try again once it runs."), "error")
        return redirect(url_for("services.service_detail", service_id=svc.id))
    audit.record("service.credentials_revealed", svc, actor=current_user,
                 after={"credential": "sftp"})
    db.session.commit()
    cfg = current_app.config
    host = cfg.get("SFTP_PUBLIC_HOST") or cfg["SFTP_PUBLISH_IP"]
    info = {"url": sftp.sftp_url(host, int(port), svc.id), "host": host, "port": int(port),
            "user": sftp.login_name(svc.id), "password": password}
    response = render_template("kinds/website/sftp_credentials.html", svc=svc, info=info)
    return response, 200, {"Cache-Control": "no-store"}
