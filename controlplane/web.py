"""The portal's own pages (home, liveness) and what every template can use."""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, url_for
from flask_babel import get_locale
from flask_login import current_user, login_required

from controlplane.kinds import registry as kinds
from controlplane.kinds.database.views import backups_of
from controlplane.monitoring.charts import human_bytes

bp = Blueprint("views", __name__)


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
    """Template globals (set on the environment so imported macros see them too)."""
    app.register_blueprint(bp)

    @app.context_processor
    def inject_helpers():
        return {"languages": current_app.config["LANGUAGES"], "get_locale": get_locale}

    app.jinja_env.globals["site_url"] = kinds.site_url
    app.jinja_env.globals["kinds"] = kinds
    app.jinja_env.globals["kinds_registry"] = kinds
    app.jinja_env.globals["database_backups"] = backups_of
    app.jinja_env.filters["bytes"] = human_bytes  # "1,5 Gio" in French, "1.5 GiB" in English
