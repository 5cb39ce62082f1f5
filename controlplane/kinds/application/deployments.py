"""Deploy on push: the registry's push events, the deployments they start, rollbacks.

The registry posts its events to `/registry/events` (`deploy_views.py`): `pushes_in` keeps the
manifest pushes of a tag, `record_pushes` adds one pending `Deployment` per running
application following that `<REGISTRY_ADDRESS>/<repository>:<tag>`, and each is handed to
`jobs.deploy`. In the worker, `apply` pulls `<repository>@<digest>` with a token for that
repository's pull scope, starts it next to the running container, switches the proxy route
once its health check passes and removes the old container; if it never becomes healthy it is
removed, the previous digest keeps serving and the deployment says why. A rollback
(`request_rollback`) is a deployment of an earlier digest the application ran, offered only
while the registry still holds it. Every outcome is audited on the service.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from controlplane.audit import trail as audit
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Account, Deployment, Service, utcnow
from controlplane.core.transitions import LifecycleError
from controlplane.kinds import registry as kinds
from controlplane.kinds.application import registry_images
from controlplane.proxy.front import proxy_spec
from controlplane.worker import queue
from controlplane.worker.runner import short_error
from provisioners.application import container as application
from provisioners.registry.api import (
    DIGEST_RE,
    MANIFEST_LIST,
    MANIFEST_V2,
    OCI_INDEX,
    OCI_MANIFEST,
    TAG_RE,
    check_repository,
)

log = logging.getLogger(__name__)

MANIFEST_TYPES = {MANIFEST_V2, MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX}
MAX_EVENTS = 100  # events read from one envelope
HISTORY = 20  # deployments listed on the service page
ROLLBACK_CHOICES = 10  # earlier digests checked in the registry for a rollback
LOCK_TIMEOUT = 900  # seconds one deployment may hold its application's lock
LOCK_WAIT = 600  # seconds a deployment waits for another one of the same application
STATUS_LABELS = {"pending": _l("in progress"), "deployed": _l("deployed"),
                 "failed": _l("failed"), "rolled_back": _l("rolled back"),
                 "superseded": _l("superseded")}
TRIGGER_LABELS = {"provision": _l("first deployment"), "push": _l("push"),
                  "rollback": _l("rollback")}


@dataclass(frozen=True)
class Push:
    """A manifest pushed under a tag, as the registry reported it."""

    repository: str
    tag: str
    digest: str
    actor: str | None  # who pushed: a person's uid or a robot account


def pushes_in(envelope) -> list[Push]:
    """The tagged manifest pushes of a notification envelope; anything else is ignored."""
    events = envelope.get("events") if isinstance(envelope, dict) else None
    if not isinstance(events, list):
        return []
    found = []
    for event in events[:MAX_EVENTS]:
        if not isinstance(event, dict) or event.get("action") != "push":
            continue
        target = event.get("target")
        if not isinstance(target, dict) or target.get("mediaType") not in MANIFEST_TYPES:
            continue
        repository, tag, digest = target.get("repository"), target.get("tag"), \
            target.get("digest")
        if not (isinstance(tag, str) and TAG_RE.fullmatch(tag)
                and isinstance(digest, str) and DIGEST_RE.fullmatch(digest)):
            continue
        try:
            check_repository(repository)
        except ValueError:
            continue
        actor = (event.get("actor") or {}).get("name") if isinstance(event.get("actor"),
                                                                     dict) else None
        actor = str(actor)[:200] if actor else None
        found.append(Push(repository=repository, tag=tag, digest=digest, actor=actor))
    return found


def following(image: str) -> list[Service]:
    """Running applications that follow exactly this image reference (registry/repo:tag)."""
    services = db.session.scalars(select(Service).where(
        Service.kind == "application", Service.status == "running").order_by(Service.id))
    return [s for s in services
            if (s.params or {}).get("follow_tag") and (s.params or {}).get("image") == image]


def pending_of(svc: Service) -> Deployment | None:
    return db.session.scalar(select(Deployment).where(
        Deployment.service_id == svc.id, Deployment.status == "pending")
        .order_by(Deployment.id.desc()).limit(1))


def record_pushes(pushes: list[Push]) -> list[Deployment]:
    """One pending deployment per (following application, pushed digest); committed.

    A digest the application already runs, or already waits for, adds nothing new (the
    registry may deliver an event twice); the waiting one is returned to be enqueued again.
    """
    address = current_app.config["REGISTRY_ADDRESS"]
    todo: list[Deployment] = []
    for push in pushes:
        for svc in following(f"{address}/{push.repository}:{push.tag}"):
            if (svc.params or {}).get("digest") == push.digest:
                log.info("event=deploy.push_ignored service=%s digest=%s reason=running",
                         svc.id, push.digest)
                continue
            dep = db.session.scalar(select(Deployment).where(
                Deployment.service_id == svc.id, Deployment.digest == push.digest,
                Deployment.trigger == "push", Deployment.status == "pending"))
            if dep is None:
                dep = Deployment(service_id=svc.id, institution_id=svc.institution_id,
                                 repository=push.repository, digest=push.digest, tag=push.tag,
                                 trigger="push", pushed_by=push.actor, status="pending")
                db.session.add(dep)
                log.info("event=deploy.push service=%s repository=%s tag=%s digest=%s by=%s",
                         svc.id, push.repository, push.tag, push.digest, push.actor)
            todo.append(dep)
    db.session.commit()
    return todo


def enqueue_failed(deployments: list[Deployment]) -> None:
    """The job queue is down: the deployments fail now (a later delivery tries again)."""
    for dep in deployments:
        _finish(dep, "failed", "job queue unavailable")
    db.session.commit()


# --- the service page ------------------------------------------------------------------------
@dataclass
class DeploymentsView:
    """What the service page shows: recent deployments, what runs, what may be rolled back to."""

    rows: list[Deployment] = field(default_factory=list)
    current: Deployment | None = None  # the deployment visitors reach now
    last_failure: Deployment | None = None  # the newest one, when it failed
    pending: bool = False
    rollback_ids: set[int] = field(default_factory=set)  # rows offered for a rollback

    def status_label(self, dep: Deployment):
        return STATUS_LABELS.get(dep.status, dep.status)

    def trigger_label(self, dep: Deployment):
        return TRIGGER_LABELS.get(dep.trigger, dep.trigger)


def history(svc: Service, limit: int = HISTORY) -> list[Deployment]:
    return list(db.session.scalars(select(Deployment).where(Deployment.service_id == svc.id)
                                   .order_by(Deployment.id.desc()).limit(limit)))


def current_of(svc: Service, rows: list[Deployment] | None = None) -> Deployment | None:
    """The deployment running now: the newest deployed one with the service's digest."""
    digest = (svc.params or {}).get("digest")
    if not digest:
        return None
    for dep in rows if rows is not None else history(svc, 200):
        if dep.digest == digest and dep.status == "deployed":
            return dep
    return None


def page_view(svc: Service, with_rollbacks: bool) -> DeploymentsView:
    """The deployments part of the service page; rollbacks are checked with the registry."""
    rows = history(svc)
    view = DeploymentsView(rows=rows, current=current_of(svc, rows),
                           pending=any(d.status == "pending" for d in rows))
    finished = [d for d in rows if d.status != "pending"]
    if finished and finished[0].status == "failed":
        view.last_failure = finished[0]
    if with_rollbacks and svc.status == "running" and not view.pending:
        choices = rollback_choices(svc, rows)
        available = _still_in_registry(svc, [d.digest for d in choices])
        view.rollback_ids = {d.id for d in choices if d.digest in available}
    return view


def rollback_choices(svc: Service, rows: list[Deployment]) -> list[Deployment]:
    """Earlier digests the application ran (the newest row of each), not the current one."""
    current = (svc.params or {}).get("digest")
    seen: set[str] = set()
    choices = []
    for dep in rows:
        if dep.status not in ("deployed", "rolled_back") or dep.digest == current \
                or dep.digest in seen:
            continue
        seen.add(dep.digest)
        choices.append(dep)
    return choices[:ROLLBACK_CHOICES]


def _still_in_registry(svc: Service, digests: list[str]) -> set[str]:
    image = registry_images.in_registry((svc.params or {}).get("image"))
    if image is None or not digests:
        return set()
    return registry_images.available(image, digests)


def request_rollback(actor: Account, svc: Service, deployment_id: int) -> Deployment:
    """Ask for the digest of an earlier deployment again; LifecycleError says why not."""
    target = db.session.get(Deployment, deployment_id)
    if target is None or target.service_id != svc.id:
        raise LifecycleError(_l("This deployment does not belong to this application."))
    if svc.status != "running":
        raise LifecycleError(_l("The application must be running to roll back."))
    if pending_of(svc) is not None:
        raise LifecycleError(_l("A deployment of this application is in progress; roll back "
                                "once it is over."))
    if target not in rollback_choices(svc, history(svc, 200)):
        raise LifecycleError(_l("This deployment cannot be rolled back to."))
    if target.digest not in _still_in_registry(svc, [target.digest]):
        raise LifecycleError(_l("This image is no longer in the registry (or the registry "
                                "cannot be reached)."))
    dep = Deployment(service_id=svc.id, institution_id=svc.institution_id,
                     repository=target.repository, digest=target.digest, tag=target.tag,
                     trigger="rollback", pushed_by=actor.username, actor_id=actor.id,
                     status="pending")
    db.session.add(dep)
    db.session.flush()
    audit.record("application.rollback_requested", svc, actor=actor,
                 before={"digest": (svc.params or {}).get("digest")},
                 after={"digest": dep.digest, "deployment": dep.id, "to": target.id})
    db.session.commit()
    return dep


# --- in the worker ---------------------------------------------------------------------------
def apply(service_id: int, deployment_id: int) -> str:
    """Deploy one pending deployment (one at a time per application); returns its status."""
    dep = db.session.get(Deployment, deployment_id)
    svc = db.session.get(Service, service_id)
    if dep is None or svc is None or dep.service_id != svc.id:
        return "gone"
    if dep.status != "pending":
        return dep.status
    lock = queue.redis_connection().lock(f"controlplane:deploy:{svc.id}", timeout=LOCK_TIMEOUT,
                                         blocking_timeout=LOCK_WAIT)
    with lock:
        db.session.refresh(svc)
        db.session.refresh(dep)
        if dep.status != "pending":
            return dep.status
        return _apply(svc, dep)


def _apply(svc: Service, dep: Deployment) -> str:
    if svc.status != "running":
        return _finish(dep, "failed", f"the application is {svc.status}: nothing was deployed")
    image = registry_images.in_registry((svc.params or {}).get("image"))
    if image is None:
        return _finish(dep, "failed", "the application's image is not in the registry")
    if dep.trigger == "push":
        now = registry_images.resolve(image, dep.tag)
        if now != dep.digest:
            return _finish(dep, "superseded", f"the tag {dep.tag} now names {now[:19]}…: "
                           "that push is deployed instead")
    elif not registry_images.available(image, [dep.digest]):
        return _finish(dep, "failed", f"{dep.digest[:19]}… is no longer in the registry")
    previous = {"digest": svc.params.get("digest"), "deployment": svc.params.get("deployment")}
    if previous["digest"] == dep.digest:
        return _finish(dep, "deployed", None)
    kind = kinds.get("application")
    client = infra.docker_client()
    current = kind.spec(svc)
    reference = registry_images.pull(client, image, dep.digest)
    new = kind.deployment_spec(svc, reference, dep.id)

    def still_running() -> None:
        db.session.refresh(svc)
        if svc.status != "running":
            raise RuntimeError(f"the application became {svc.status} during the deployment")

    try:
        application.deploy_application(client, current, new, proxy_spec(),
                                       float(current_app.config["APP_DEPLOY_TIMEOUT"]),
                                       before_switch=still_running)
    except application.ApplicationUnhealthy as exc:
        return _finish(dep, "failed", short_error(exc))
    replaced = current_of(svc)
    svc.params = {**svc.params, "digest": dep.digest, "deployed_image": reference,
                  "deployment": dep.id}
    if dep.trigger == "rollback" and replaced is not None:
        replaced.status = "rolled_back"
    _finish(dep, "deployed", None, commit=False, before=previous)
    db.session.commit()
    application.retire_containers(client, new)
    if current.image != reference and "@" in current.image:  # a digest this job pulled
        application.forget_image(client, current.image)
    return "deployed"


def _finish(dep: Deployment, status: str, error: str | None, *, commit: bool = True,
            before: dict | None = None) -> str:
    dep.status, dep.error, dep.finished_at = status, error, utcnow()
    action = {"deployed": "application.rolled_back" if dep.trigger == "rollback"
              else "application.deployed",
              "failed": "application.deploy_failed",
              "superseded": "application.deploy_superseded"}[status]
    audit.record(action, dep.service, actor=dep.actor, before=before, after={
        "deployment": dep.id, "digest": dep.digest, "tag": dep.tag, "trigger": dep.trigger,
        "pushed_by": dep.pushed_by, "error": error})
    log.info("event=deploy.%s service=%s deployment=%s digest=%s error=%s", status,
             dep.service_id, dep.id, dep.digest, error)
    if commit:
        db.session.commit()
    return status


def record_failure(exc: Exception, service_id: int, deployment_id: int) -> None:
    """The job raised (registry, pull, Docker): the deployment failed, the service is as it was."""
    dep = db.session.get(Deployment, deployment_id)
    if dep is not None and dep.status == "pending":
        _finish(dep, "failed", short_error(exc), commit=False)
