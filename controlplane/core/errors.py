"""Error pages: a clear message in the user's language, never a stack trace."""
from __future__ import annotations

import logging

from flask import render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def _wants_json() -> bool:
    return request.path.endswith(".json") or request.path.startswith("/api/")


def _page(status: int, title: str, message: str):
    if _wants_json():
        return {"error": title, "message": message}, status
    return render_template("error.html", status=status, title=title, message=message), status


def init_app(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return _page(400, _("Form expired"), _("The form expired or was sent from another "
                                               "page; go back, reload the page and try again."))

    @app.errorhandler(403)
    def forbidden(exc):
        return _page(403, _("Not allowed"), _("Your role does not allow this action."))

    @app.errorhandler(404)
    def not_found(exc):
        return _page(404, _("Not found"), _("This page does not exist, or it is not yours to "
                                            "see."))

    @app.errorhandler(413)
    def too_large(exc):
        limit = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
        return _page(413, _("File too large"), _("The file is too large: the limit is "
                                                 "%(mib)s MiB.", mib=limit))

    @app.errorhandler(429)
    def too_many(exc):
        return _page(429, _("Too many requests"), _("Wait a minute before trying again."))

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return _page(exc.code or 500, exc.name, _("The request could not be handled."))

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("event=error.unhandled path=%s", request.path)
        return _page(500, _("Something went wrong"), _("The error was recorded; try again or "
                                                        "contact the data centre."))
