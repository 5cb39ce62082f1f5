"""Application jobs: deploy a digest (a push of the followed tag, or a rollback)."""
from __future__ import annotations

from controlplane.core.models import Deployment
from controlplane.kinds.application import deployments
from controlplane.worker import queue
from controlplane.worker.runner import job


@job(on_failure=deployments.record_failure)
def deploy(service_id: int, deployment_id: int) -> str:
    """Switch the application to the deployment's digest, or leave it as it was and say why."""
    return deployments.apply(service_id, deployment_id)


def job_id(dep: Deployment) -> str:
    """One job per application and digest: `service-<id>-deploy-<hex>` (`-rollback-` for a
    rollback), so a notification delivered twice deploys once."""
    action = "rollback" if dep.trigger == "rollback" else "deploy"
    return f"service-{dep.service_id}-{action}-{dep.digest.split(':', 1)[-1]}"


def enqueue(dep: Deployment) -> None:
    """Hand the deployment to a worker (QueueUnavailable when Redis is down)."""
    queue.enqueue_unique(deploy, dep.service_id, dep.id, job_id=job_id(dep))
