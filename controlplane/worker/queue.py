"""Enqueue work for the RQ workers: ids only, one job per (object, action) at a time.

Usage::

    from controlplane.worker import queue
    queue.enqueue_unique(run_backup, svc.id, "manual", job_id=f"service-{svc.id}-backup")

`func` is the job function itself (decorated with `worker.runner.job`), never a dotted string.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

UNFINISHED = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


class QueueUnavailable(RuntimeError):
    """Redis could not be reached; nothing was enqueued."""


def redis_connection() -> Redis:
    conn = current_app.extensions.get("redis")
    if conn is None:
        conn = Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=3,
                              socket_timeout=10)
        current_app.extensions["redis"] = conn
    return conn


def queue() -> Queue:
    return Queue(current_app.config["RQ_QUEUE"], connection=redis_connection())


def enqueue_unique(func: Callable, *args, job_id: str, timeout: int = 900) -> Job:
    """Enqueue `func(*args)` under a deterministic id, reusing an unfinished job with that id."""
    if not getattr(func, "is_job", False):
        raise TypeError(f"{func!r} is not a job: decorate it with controlplane.worker.runner.job")
    try:
        q = queue()
        try:
            job = Job.fetch(job_id, connection=q.connection)
            if job.get_status(refresh=False) in UNFINISHED:
                log.info("event=enqueue.reused job=%s", job_id)
                return job
        except NoSuchJobError:
            pass
        job = q.enqueue(func, *args, job_id=job_id, job_timeout=timeout, result_ttl=3600,
                        failure_ttl=7 * 86400)
    except RedisError as exc:
        raise QueueUnavailable(str(exc)) from exc
    log.info("event=enqueue job=%s func=%s", job_id, func.__qualname__)
    return job
