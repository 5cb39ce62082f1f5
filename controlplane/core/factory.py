"""The application every process shares: configuration, policies, database, translations.

The portal (`controlplane.app.create_app`) adds its web extensions and blueprints on top; the
RQ workers and the scheduler (`worker.runner`) use this base as it is. Nothing here opens a
network connection.
"""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from flask import Flask, current_app, request, session
from flask_login import current_user

import policies
from controlplane.core.config import Config
from controlplane.core.extensions import babel, db

ROOT = Path(__file__).resolve().parents[2]


def select_locale() -> str:
    """Session choice, then the account's, then the browser's, French by default."""
    languages = current_app.config["LANGUAGES"]
    chosen = session.get("lang")
    if chosen in languages:
        return chosen
    if current_user and getattr(current_user, "locale", None) in languages:
        return current_user.locale
    return request.accept_languages.best_match(list(languages)) or "fr"


def _secret_key(instance: Path) -> str:
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def make_app(test_config: dict | None = None) -> Flask:
    """Configuration (defaults, instance/settings.py, CONTROLPLANE_* variables), policies,
    the database and translations."""
    instance = Path(os.environ.get("CONTROLPLANE_INSTANCE") or ROOT / "instance").resolve()
    app = Flask("controlplane", instance_path=str(instance), instance_relative_config=True,
                template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "controlplane" / "static"))
    app.config.from_object(Config)
    app.config.from_pyfile("settings.py", silent=True)
    app.config.from_prefixed_env("CONTROLPLANE")
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        instance.mkdir(parents=True, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'controlplane.db'}"
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")

    logging.basicConfig(level=app.config.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app.extensions["policies"] = policies.load(app.config.get("POLICIES_DIR"))
    app.extensions["retention"] = policies.load_retention(app.config.get("POLICIES_DIR"))
    db.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    return app
