"""The one way a job runs: in an app context, logged, and with its failure recorded.

Usage::

    @job(on_failure=_record_failure)
    def run_backup(service_id: int, trigger: str = "manual") -> str:
        ...  # only the work

    def _record_failure(exc, service_id, trigger="manual"):
        ...  # called after the rollback, with the job's arguments; the runner commits

A job function takes ids and plain data (its signature is a wire format: new parameters only
as trailing keywords with defaults). The runner gives it the worker's app context (the caller's
when there is one, as in tests), logs `event=job.start|done|failed job=<RQ id>`, and when the
work raises: rolls the session back, calls `on_failure`, commits, and returns "failed".
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import nullcontext

from flask import Flask, has_app_context
from rq import get_current_job

from controlplane.core.extensions import db
from controlplane.core.factory import make_app

log = logging.getLogger(__name__)
_app: Flask | None = None

FailureHandler = Callable[..., None]


def worker_app() -> Flask:
    """The app of this worker process (configuration, policies, database; no web parts)."""
    global _app
    if _app is None:
        _app = make_app()
    return _app


def set_app(app: Flask) -> None:
    """Let a worker hand one app (and its clients) to every job it runs."""
    global _app
    _app = app


def context():
    return nullcontext() if has_app_context() else worker_app().app_context()


def short_error(exc: BaseException) -> str:
    """One line for the user-facing record of a failure (the traceback goes to the log)."""
    text = getattr(exc, "explanation", None) or str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:500]


def job(on_failure: FailureHandler | None = None) -> Callable[[Callable], Callable]:
    """Decorator making a function a job (see the module docstring)."""

    def decorate(func: Callable) -> Callable:
        name = func.__qualname__

        @functools.wraps(func)
        def run(*args, **kwargs):
            current = get_current_job()
            job_id = current.id if current is not None else "-"
            with context():
                log.info("event=job.start job=%s func=%s args=%s", job_id, name, args)
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - recorded below, in one place
                    db.session.rollback()
                    log.exception("event=job.failed job=%s func=%s args=%s", job_id, name, args)
                    if on_failure is not None:
                        try:
                            on_failure(exc, *args, **kwargs)
                            db.session.commit()
                        except Exception:  # noqa: BLE001 - the original failure is logged
                            db.session.rollback()
                            log.exception("event=job.failure_not_recorded job=%s func=%s",
                                          job_id, name)
                    return "failed"
                log.info("event=job.done job=%s func=%s result=%s", job_id, name, result)
                return result

        run.is_job = True
        return run

    return decorate
