"""Health of every running service: container state plus a probe; alerts when it turns bad."""
from __future__ import annotations

import json
import logging
import time

from flask import current_app
from sqlalchemy import select

from controlplane.audit import trail as audit
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Service, utcnow
from controlplane.kinds import registry as kinds
from controlplane.kinds.mail import platform as mail_platform
from controlplane.monitoring.alerts import clear_alert, raise_alert
from controlplane.worker import queue
from provisioners import probes, proxy

log = logging.getLogger(__name__)
PLATFORM_KEY = "controlplane:platform-health"


def check_service(svc: Service, retry_after: float = 1.0) -> tuple[bool, str]:
    """Probe; a failure is confirmed by a second probe before it counts (no alert on a blip)."""
    kind = kinds.find(svc.kind)
    if kind is None:
        return False, "unknown kind"
    ok, detail = kind.probe(svc)
    if not ok and retry_after:
        time.sleep(retry_after)
        ok, detail = kind.probe(svc)
    return ok, detail


def record(svc: Service, ok: bool, detail: str) -> None:
    """Store the verdict; a change is audited, and turning unhealthy raises an alert."""
    new = "healthy" if ok else "unhealthy"
    key = f"health:service:{svc.id}"
    if svc.health != new:
        before = {"health": svc.health}
        svc.health, svc.health_changed_at = new, utcnow()
        audit.record(f"service.{new}", svc, before=before, after={"health": new, "detail": detail})
        log.info("event=health.change service=%s health=%s detail=%s", svc.id, new, detail)
    svc.health_detail = detail[:500]
    if ok:
        clear_alert(key)
    else:
        raise_alert("unhealthy", key, f"{svc.hostname or svc.name or svc.id}: {detail}",
                    service=svc)


def check_all() -> int:
    """Probe every running service once; returns how many were checked."""
    services = db.session.scalars(select(Service).where(Service.status == "running")).all()
    for svc in services:
        try:
            ok, detail = check_service(svc)
        except Exception as exc:  # noqa: BLE001 - a probe bug must not stop the sweep
            ok, detail = False, f"probe error: {exc}"
        record(svc, ok, detail)
    for svc in db.session.scalars(select(Service).where(Service.status.in_(("stopped",
                                                                            "deleted")))):
        if svc.health is not None:
            svc.health, svc.health_changed_at = None, utcnow()
            clear_alert(f"health:service:{svc.id}")
    check_platform()
    db.session.commit()
    return len(services)


def check_platform() -> dict:
    """The platform's own components (front proxy, mail) — kept in Redis for the dashboard."""
    cfg = current_app.config
    results = {}
    state, _ = probes.container_state(infra.docker_client(), proxy.container_name(cfg["DOCKER_PREFIX"]))
    results["proxy"] = {"ok": state == "running", "detail": state}
    if current_app.config.get("MAIL_SERVICE_PASSWORD"):
        results.update({f"mail-{k}": v for k, v in mail_platform.probe().items()})
    for name, result in results.items():
        key = f"health:platform:{name}"
        if result["ok"]:
            clear_alert(key)
        else:
            raise_alert("unhealthy", key, f"{name}: {result['detail']}")
    try:
        queue.redis_connection().set(PLATFORM_KEY, json.dumps(results))
    except Exception:  # noqa: BLE001 - the dashboard only loses this panel
        log.warning("event=health.platform_not_saved")
    return results


def platform_status() -> dict:
    try:
        raw = queue.redis_connection().get(PLATFORM_KEY)
    except Exception:  # noqa: BLE001
        return {}
    return json.loads(raw) if raw else {}
