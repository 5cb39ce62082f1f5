"""Blueprints per audience: portal (focal points), ops (operators), audit (auditors), services."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, url_for
from flask_login import current_user, login_required

from ..extensions import db

bp = Blueprint("views", __name__)


def scoped_get(model, obj_id: int):
    """Fetch a row the current user may see; another institution's rows do not exist for them."""
    obj = db.session.get(model, obj_id)
    if obj is None:
        abort(404)
    if current_user.is_focal_point and obj.institution_id != current_user.institution_id:
        abort(404)
    return obj


@bp.route("/")
@login_required
def home():
    """Send each role to its own start page."""
    target = {"focal_point": "portal.index", "operator": "ops.queue", "auditor": "audit.events"}
    return redirect(url_for(target[current_user.role]))


@bp.route("/healthz")
def healthz():
    """Liveness for load balancers: the app answers, nothing else is checked."""
    return {"status": "ok"}


def init_app(app) -> None:
    from . import (audit, dashboard, databases, mailboxes, ops, portal, quota, reports,
                   services)
    from . import sites

    app.register_blueprint(bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(services.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(quota.bp)
    app.register_blueprint(databases.bp)
    app.register_blueprint(mailboxes.bp)
    app.register_blueprint(sites.bp)
    app.jinja_env.globals["database_backups"] = databases.backups_of

    @app.context_processor
    def inject_helpers():
        from flask import current_app
        from flask_babel import get_locale

        return {"languages": current_app.config["LANGUAGES"], "get_locale": get_locale}

    # A global, not a context variable, so imported macros can use it too.
    from .. import kinds

    app.jinja_env.globals["site_url"] = lambda svc: site_url(app, svc)
    app.jinja_env.globals["kinds"] = kinds
    app.jinja_env.globals["kinds_registry"] = kinds


def site_url(app, svc) -> str | None:
    from .. import kinds

    kind = kinds.get(svc.kind)
    return kind.url(svc) if kind else None
