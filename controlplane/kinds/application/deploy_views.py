"""Deploy on push, on the web side: the registry's notification endpoint, the rollback button,
and the deployments shown on an application's service page."""
from __future__ import annotations

import hmac
import json
import logging

from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from controlplane.accounts.roles import role_required, scoped_get
from controlplane.core.extensions import csrf, db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Service
from controlplane.core.transitions import LifecycleError
from controlplane.kinds.application import deployments, jobs
from controlplane.worker.queue import QueueUnavailable

log = logging.getLogger(__name__)

bp = Blueprint("deployments", __name__)


def _answer(status: int, message: str, **extra):
    return {"status": message, **extra}, status, {"Cache-Control": "no-store"}


@bp.route("/registry/events", methods=["POST"])
@csrf.exempt
def registry_events():
    """The registry's notifications (distribution's envelope of events).

    Only the shared secret opens it (`Authorization: Bearer <REGISTRY_NOTIFICATION_SECRET>`,
    compared in constant time); it records the pushes of followed tags and enqueues one job
    per application, then answers at once. Events it has no use for are acknowledged too, so
    the registry does not send them again.
    """
    secret = current_app.config.get("REGISTRY_NOTIFICATION_SECRET")
    if not secret:
        return _answer(404, "not configured")
    given = request.headers.get("Authorization", "").encode("utf-8")
    if not hmac.compare_digest(given, f"Bearer {secret}".encode("utf-8")):
        log.warning("event=registry.events_refused ip=%s", request.remote_addr)
        return _answer(401, "unauthorized")
    limit = int(current_app.config["REGISTRY_EVENTS_MAX_BYTES"])
    if (request.content_length or 0) > limit:
        return _answer(413, "too large")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return _answer(413, "too large")
    try:
        envelope = json.loads(body or b"{}")
    except ValueError:
        return _answer(400, "not JSON")
    todo = deployments.record_pushes(deployments.pushes_in(envelope))
    try:
        for dep in todo:
            jobs.enqueue(dep)
    except QueueUnavailable as exc:
        log.error("event=registry.events_enqueue_failed error=%s", exc)
        deployments.enqueue_failed([d for d in todo if d.status == "pending"])
        return _answer(503, "job queue unavailable")  # the registry delivers it again
    return _answer(200, "ok", deployments=[d.id for d in todo])


@bp.route("/services/<int:service_id>/deployments/<int:deployment_id>/rollback",
          methods=["POST"])
@role_required("focal_point", "operator")
def rollback(service_id: int, deployment_id: int):
    """Run an earlier digest of the application again (still in the registry)."""
    svc = scoped_get(Service, service_id)
    if ActionForm().validate_on_submit():
        try:
            if svc.kind != "application":
                raise LifecycleError(_("Only applications have deployments."))
            dep = deployments.request_rollback(current_user, svc, deployment_id)
        except LifecycleError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            try:
                jobs.enqueue(dep)
            except QueueUnavailable:
                deployments.enqueue_failed([dep])
                flash(_("The job queue is unavailable; try again in a few minutes."), "error")
            else:
                flash(_("The application is being rolled back to %(digest)s.",
                        digest=dep.short_digest), "success")
    return redirect(url_for("services.service_detail", service_id=svc.id))


@bp.app_template_global("application_deployments")
def application_deployments(svc: Service) -> deployments.DeploymentsView:
    """For the application's detail partial: rollbacks only for those who may ask one."""
    may_roll_back = current_user.is_authenticated and current_user.role in ("focal_point",
                                                                            "operator")
    return deployments.page_view(svc, with_rollbacks=may_roll_back)
