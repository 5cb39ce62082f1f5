"""The portal's application factory: the shared base, web extensions, every domain's pages.

`create_app()` only wires things: no network call, migration or sleep happens here.
"""
from __future__ import annotations

from flask import Flask

from controlplane import commands, web
from controlplane.accounts import views as accounts
from controlplane.audit import views as audit
from controlplane.core import errors
from controlplane.core.extensions import csrf, db, limiter, migrate
from controlplane.core.factory import ROOT, make_app
from controlplane.kinds.application import deploy_views as app_deployments
from controlplane.kinds.application import views as applications
from controlplane.kinds.database import views as databases
from controlplane.kinds.mail import views as mailboxes
from controlplane.kinds.website import views as sites
from controlplane.monitoring import views as monitoring
from controlplane.quotas import views as quotas
from controlplane.registry import views as registry
from controlplane.reporting import views as reporting
from controlplane.requests import ops_views
from controlplane.requests import views as requests
from controlplane.services import views as services
from controlplane.worker import views as tasks

BLUEPRINTS = (requests.portal, requests.bp, ops_views.bp, audit.bp, services.bp, reporting.bp,
              tasks.bp, monitoring.bp, quotas.bp, databases.bp, mailboxes.bp, sites.bp,
              applications.bp, app_deployments.bp, registry.api, registry.bp)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the portal: configuration, extensions, blueprints."""
    app = make_app(test_config)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    accounts.init_app(app)
    web.init_app(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    errors.init_app(app)
    commands.init_app(app)
    return app
