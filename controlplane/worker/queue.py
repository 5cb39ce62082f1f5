"""Enqueue work for the RQ workers: ids only, one job per (object, action) at a time."""
from __future__ import annotations

import logging

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


def enqueue_unique(func: str, *args, job_id: str, timeout: int = 900) -> Job:
    """Enqueue `func(*args)` under a deterministic id, reusing an unfinished job with that id."""
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
    log.info("event=enqueue job=%s func=%s", job_id, func)
    return job


def enqueue_service_action(service_id: int, action: str) -> Job:
    return enqueue_unique("controlplane.services.jobs.run_service_action", service_id, action,
                          job_id=f"service-{service_id}-{action}")


def enqueue_deploy(upload_id: int) -> Job:
    return enqueue_unique("controlplane.services.jobs.deploy_upload", upload_id, job_id=f"upload-{upload_id}")
