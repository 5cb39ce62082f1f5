"""The registry's token endpoint (`GET /v2/token`, the distribution token specification) and
the robot accounts' page."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from controlplane.accounts.roles import role_required, scoped_get
from controlplane.core.extensions import csrf, db, limiter
from controlplane.core.forms import ActionForm
from controlplane.core.models import Institution, RegistryRobot, utcnow
from controlplane.registry import access, robots, tokens
from controlplane.registry.forms import RobotForm

log = logging.getLogger(__name__)

# The token endpoint: Docker Engines call it with HTTP Basic credentials, never with a form.
api = Blueprint("registry_token", __name__)
csrf.exempt(api)
bp = Blueprint("registry", __name__, url_prefix="/registry")
BASIC_CHALLENGE = 'Basic realm="COMGOV registry", charset="UTF-8"'


def _error(status: int, code: str, message: str):
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = BASIC_CHALLENGE
    return {"errors": [{"code": code, "message": message}]}, status, headers


def _mib(size: int) -> str:
    return format_decimal(round(size / 2**20, 1))


def _token_key() -> str:
    auth = request.authorization
    user = (auth.username or "") if auth is not None else ""
    return f"{request.remote_addr}:{user.lower()[:64]}"


def _api_http_error(exc: HTTPException):
    """Docker clients read JSON errors: no HTML page on this endpoint (429 included)."""
    code = "TOOMANYREQUESTS" if exc.code == 429 else "UNSUPPORTED"
    return _error(exc.code or 400, code, exc.description or exc.name)


# Flask prefers the app's handler for a status code over a blueprint's handler for a class:
# name the codes the app handles.
for _code in (HTTPException, 400, 403, 404, 405, 413, 429):
    api.register_error_handler(_code, _api_http_error)


@api.route("/v2/token", methods=["GET"])
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTRY_TOKEN"], key_func=_token_key)
def token():
    """Authenticate HTTP Basic credentials and sign a token granting the allowed scopes."""
    cfg = current_app.config
    service = request.args.get("service")
    if service is not None and service != cfg["REGISTRY_SERVICE"]:
        return _error(400, "UNSUPPORTED", _("Unknown registry service %(service)s.",
                                            service=service[:100]))
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username or not auth.password:
        return _error(401, "UNAUTHORIZED", _("Log in with your portal account or a robot "
                                             "account (docker login)."))
    try:
        principal, robot = tokens.authenticate(auth.username, auth.password)
    except tokens.BadCredentials:
        log.info("event=registry.token.refused user=%s ip=%s", auth.username[:64],
                 request.remote_addr)
        return _error(401, "UNAUTHORIZED", _("Unknown user name or wrong password, or a "
                                             "revoked or expired robot account."))
    except tokens.Unavailable:
        return _error(503, "UNAVAILABLE", _("The registry's authentication is unavailable; "
                                            "try again in a few minutes or contact the data "
                                            "centre."))
    granted = access.grant(principal, access.parse_scopes(request.args.getlist("scope")))
    full = tokens.full_namespace(access.pushed_namespaces(granted))
    if full is not None:
        log.info("event=registry.token.over_quota user=%s namespace=%s used=%d quota=%d",
                 principal.name, full.namespace, full.used, full.quota)
        return _error(403, "DENIED", _(
            "The registry namespace %(namespace)s/ has reached its quota (%(used)s MiB used of "
            "%(quota)s MiB): delete images on the portal's Images page before pushing. Pulling "
            "still works.", namespace=full.namespace, used=_mib(full.used),
            quota=_mib(full.quota)))
    try:
        issued = tokens.issue(principal.name, granted)
    except tokens.Unavailable:
        return _error(503, "UNAVAILABLE", _("The registry's authentication is unavailable; "
                                            "try again in a few minutes or contact the data "
                                            "centre."))
    if robot is not None:
        robots.mark_used(robot, granted)
    log.info("event=registry.token.issued user=%s kind=%s granted=%s", principal.name,
             principal.kind, ";".join(f"{a['name']}:{','.join(a['actions'])}" for a in granted))
    return issued.response(), 200, {"Cache-Control": "no-store"}


# --------------------------------------------------------------------------- robot accounts

def _form() -> RobotForm:
    form = RobotForm()
    if current_user.is_operator:
        form.institution.choices = [
            (i.id, f"{i.acronym} — {i.name}")
            for i in db.session.scalars(select(Institution).order_by(Institution.acronym))]
    else:
        del form.institution
    return form


def _page(form: RobotForm | None = None, status: int = 200, created: RegistryRobot | None = None,
          secret: str | None = None):
    cfg = current_app.config
    namespace = None
    if current_user.is_focal_point:
        namespace = access.namespace_of(current_user.institution.acronym)
    html = render_template(
        "registry/robots.html", robots=robots.visible_to(current_user),
        form=form if form is not None else (None if current_user.is_auditor else _form()),
        action_form=ActionForm(), created=created, secret=secret,
        login_name=robots.login_name, is_live=robots.is_live, now=utcnow(),
        registry=cfg["REGISTRY_ADDRESS"], namespace=namespace,
        platform_namespace=access.PLATFORM_NAMESPACE)
    return html, status, {"Cache-Control": "no-store"}


@bp.route("/robots")
@role_required("focal_point", "operator", "auditor")
def robots_page():
    """Robot accounts of the registry: the institution's (focal points) or all (staff)."""
    return _page()


@bp.route("/robots", methods=["POST"])
@role_required("focal_point", "operator")
def create_robot():
    """Create a robot account; its secret is shown in this answer and never again."""
    form = _form()
    if not form.validate_on_submit():
        return _page(form, 422)
    if current_user.is_focal_point:
        institution = current_user.institution
    else:
        institution = db.session.get(Institution, form.institution.data or 0)
        if institution is None:
            form.institution.errors = [_("Choose an institution.")]
            return _page(form, 422)
    try:
        robot, secret = robots.create(current_user, institution, form.name.data, form.days.data)
    except robots.RobotError as exc:
        form.name.errors = list(form.name.errors) + [str(exc.message)]
        return _page(form, 422)
    log.info("event=registry.robot.created robot=%s by=%s", robots.login_name(robot),
             current_user.username)
    return _page(created=robot, secret=secret)


@bp.route("/robots/<int:robot_id>/revoke", methods=["POST"])
@role_required("focal_point", "operator")
def revoke_robot(robot_id: int):
    """Revoke a robot account: it gets no token any more."""
    robot = scoped_get(RegistryRobot, robot_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if robots.revoke(current_user, robot):
        flash(_("Robot account %(login)s revoked.", login=robots.login_name(robot)), "success")
    return redirect(url_for("registry.robots_page"))
