"""Blueprints per audience: portal (focal points), ops (operators), audit (auditors), services."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, url_for
from flask_login import current_user, login_required

from controlplane.core.extensions import db

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
    from controlplane.audit import views as audit
    from controlplane.monitoring import views as dashboard
    from controlplane.kinds.database import views as databases
    from controlplane.kinds.mail import views as mailboxes
    from controlplane.requests import ops_views as ops, views as portal
    from controlplane.quotas import views as quota
    from controlplane.reporting import views as reports
    from controlplane.services import views as services
    from controlplane.kinds.website import views as sites

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
    from controlplane.kinds import registry as kinds

    app.jinja_env.globals["site_url"] = lambda svc: site_url(app, svc)
    app.jinja_env.globals["kinds"] = kinds
    app.jinja_env.globals["kinds_registry"] = kinds


def site_url(app, svc) -> str | None:
    from controlplane.kinds import registry as kinds

    kind = kinds.get(svc.kind)
    return kind.url(svc) if kind else None
