"""`controlplane worker` and `controlplane scheduler`: they build the worker's app, not the portal."""
from __future__ import annotations

import os

import click
from rq import SimpleWorker, Worker

# Imported once here rather than in every forked job.
import provisioners.proxy  # noqa: F401
import provisioners.website.site  # noqa: F401
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.worker import queue, runner, scheduler


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--fork", is_flag=True, help="Run each job in a forked process (isolation over "
              "speed; costs about 150 ms per job).")
def worker(burst: bool, fork: bool) -> None:
    """Run an RQ worker for the provisioning queue.

    Jobs are short orchestration calls (Docker and LDAP requests), so by default they run in
    the worker's own process, reusing its Docker client and database connections; each job
    gets its own app context (and so its own database session) from the job runner.
    """
    app = runner.worker_app()
    with app.app_context():
        # One Docker client (its API version negotiated once); forks open their own connections.
        infra.docker_client().api.close()
        connection = queue.redis_connection()
        engine = db.engine
    if fork:
        # Each job runs in a fork: it must not reuse the parent's database connections.
        os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    cls = Worker if fork else SimpleWorker
    w = cls([app.config["RQ_QUEUE"]], connection=connection)
    w.work(burst=burst, logging_level=app.config.get("LOG_LEVEL", "INFO"))


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Enqueue what is due and exit.")
def scheduler_cmd(once: bool) -> None:
    """Enqueue the periodic jobs (audit sealing, metering, health, backups, retention)."""
    scheduler.run(runner.worker_app(), once=once)
