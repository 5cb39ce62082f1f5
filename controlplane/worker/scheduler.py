"""Periodic jobs, declared as data; the scheduler only enqueues them, workers run them."""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from redis.exceptions import RedisError

from controlplane.audit.jobs import seal_audit
from controlplane.backups.jobs import purge_expired, scheduled_backups
from controlplane.kinds.mail.jobs import mail_usage
from controlplane.monitoring.jobs import check_health, meter, purge_old_usage, rollup_usage
from controlplane.worker import queue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Periodic:
    name: str
    func: Callable  # a job (worker.runner.job), enqueued with no argument
    every_key: str  # configuration key holding the interval in seconds


SCHEDULE = (
    Periodic("audit-seal", seal_audit, "AUDIT_SEAL_INTERVAL"),
    Periodic("metering", meter, "METERING_INTERVAL"),
    Periodic("health", check_health, "HEALTH_INTERVAL"),
    Periodic("rollup", rollup_usage, "ROLLUP_INTERVAL"),
    Periodic("backups", scheduled_backups, "BACKUP_CHECK_INTERVAL"),
    Periodic("retention", purge_expired, "RETENTION_INTERVAL"),
    Periodic("usage-retention", purge_old_usage, "RETENTION_INTERVAL"),
    Periodic("mail-usage", mail_usage, "MAIL_USAGE_INTERVAL"),
)


def tick(app: Flask) -> list[str]:
    """Enqueue every periodic job whose interval has elapsed; returns the names enqueued.

    A Redis key per job (SET NX EX interval) is the clock, so any number of schedulers can
    run side by side without running a job twice per interval.
    """
    enqueued = []
    with app.app_context():
        conn = queue.redis_connection()
        for job in SCHEDULE:
            every = int(app.config.get(job.every_key) or 0)
            if every <= 0:
                continue
            if conn.set(f"controlplane:periodic:{job.name}", "1", nx=True, ex=every):
                queue.enqueue_unique(job.func, job_id=f"periodic-{job.name}",
                                     timeout=max(every * 4, 300))
                enqueued.append(job.name)
    return enqueued


def run(app: Flask, *, once: bool = False, poll: float = 1.0) -> None:
    """Tick every `poll` seconds until SIGTERM/SIGINT."""
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("event=scheduler.start jobs=%s", ",".join(j.name for j in SCHEDULE))
    while not stopping:
        try:
            names = tick(app)
            if names:
                log.info("event=scheduler.enqueued jobs=%s", ",".join(names))
        except (RedisError, queue.QueueUnavailable) as exc:
            log.error("event=scheduler.redis_error error=%s", exc)
        if once:
            return
        time.sleep(poll)
