"""Periodic jobs: enqueued once per interval however many schedulers tick (real Redis)."""
from __future__ import annotations

from redis import Redis
from rq import Queue

from controlplane.worker import scheduler
from tests.conftest import run_worker


def test_tick_enqueues_each_job_once_per_interval(app):
    first = scheduler.tick(app)
    assert "audit-seal" in first and "metering" in first
    assert scheduler.tick(app) == []  # a second scheduler in the same interval does nothing
    queued = Queue("test", connection=Redis.from_url(app.config["REDIS_URL"])).job_ids
    assert "periodic-audit-seal" in queued
    assert len(queued) == len(set(queued))


def test_disabled_job_is_not_enqueued(app):
    app.config["METERING_INTERVAL"] = 0
    assert "metering" not in scheduler.tick(app)


def test_seal_job_runs_in_a_worker(app, auth):
    for job in scheduler.SCHEDULE:
        if job.name != "audit-seal":
            app.config[job.every_key] = 0
    auth.login("fp.sante")  # writes audit events
    assert scheduler.tick(app) == ["audit-seal"]
    run_worker(app)
    from controlplane.audit import trail as audit

    with app.app_context():
        result = audit.verify()
        assert result.ok and result.unsealed == 0 and result.checked >= 1
