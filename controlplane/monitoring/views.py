"""Operators' capacity dashboard, focal points' usage view, and the Prometheus endpoint."""
from __future__ import annotations

import hmac
from collections import Counter
from datetime import timedelta

from flask import Blueprint, Response, abort, current_app, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from controlplane.accounts.roles import role_required
from controlplane.core.extensions import csrf, db
from controlplane.core.models import Alert, Service, utcnow
from controlplane.monitoring import capacity, charts, health, usage
from controlplane.quotas import allocation as quotas

bp = Blueprint("dashboard", __name__)


def _charts(institution_id: int | None = None, service_id: int | None = None) -> list:
    rows = usage.series("hour", institution_id=institution_id, service_id=service_id,
                        since=utcnow() - timedelta(hours=48))
    label = lambda r: r["start"].strftime("%d/%m %Hh")  # noqa: E731
    return [
        charts.line_chart([(label(r), r["cpu_cores"]) for r in rows], title=_("CPU (cores)")),
        charts.line_chart([(label(r), r["memory_bytes"] / 2**20) for r in rows],
                          title=_("Memory (MiB)")),
        charts.line_chart([(label(r), r["network_bytes"] / 2**20) for r in rows],
                          title=_("Network (MiB per hour)")),
        charts.line_chart([(label(r), r["disk_bytes"] / 2**20) for r in rows],
                          title=_("Disk (MiB)")),
    ]


@bp.route("/ops/dashboard")
@role_required("operator", "auditor")
def ops_dashboard():
    """Physical vs allocated vs used, per institution; top consumers; states; alerts; charts."""
    rows = capacity.per_institution()
    allocated, used = capacity.totals(rows)
    states = Counter(db.session.scalars(select(Service.status).where(
        Service.status != "deleted")).all())
    alerts = db.session.scalars(select(Alert).where(Alert.cleared_at.is_(None))
                                .order_by(Alert.raised_at.desc())).all()
    latest = usage.latest_by_service()
    rates = capacity.cpu_rates()
    services = {s.id: s for s in db.session.scalars(select(Service).where(
        Service.id.in_(set(latest) | set(rates))))} if (latest or rates) else {}
    top_memory = sorted(((s, latest[s.id].memory_bytes or 0) for s in services.values()
                         if s.id in latest), key=lambda x: -x[1])[:10]
    top_cpu = sorted(((s, rates.get(s.id, 0.0)) for s in services.values()),
                     key=lambda x: -x[1])[:10]
    return render_template("monitoring/dashboard.html", rows=rows, host=capacity.host(),
                           allocated=allocated, used=used, states=states, alerts=alerts,
                           top_memory=top_memory, top_cpu=top_cpu, charts=_charts(),
                           platform=health.platform_status(), human=charts.human_bytes)


@bp.route("/portal/usage")
@role_required("focal_point")
def institution_usage():
    """The institution's allocation and use against its quota, with charts."""
    row = capacity.per_institution(current_user.institution_id)[0]
    quota = quotas.summary(current_user.institution)
    alerts = db.session.scalars(select(Alert).where(
        Alert.cleared_at.is_(None), Alert.institution_id == current_user.institution_id)).all()
    return render_template("monitoring/usage.html", row=row, quota=quota, alerts=alerts,
                           charts=_charts(institution_id=current_user.institution_id),
                           human=charts.human_bytes)


def _metrics_allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and supplied and hmac.compare_digest(token, supplied):
        return True
    return bool(current_user.is_authenticated and current_user.role in ("operator", "auditor"))


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


@bp.route("/metrics")
@csrf.exempt
def metrics():
    """Prometheus text format: per-service and per-institution figures (token or operator)."""
    if not _metrics_allowed():
        abort(404)
    latest = usage.latest_by_service()
    services = db.session.scalars(select(Service).where(Service.status != "deleted")).all()
    lines = [
        "# HELP comgov_service_up 1 when the service runs and its last probe passed.",
        "# TYPE comgov_service_up gauge",
        "# HELP comgov_service_cpu_seconds_total CPU time used by the service's containers.",
        "# TYPE comgov_service_cpu_seconds_total counter",
        "# HELP comgov_service_memory_bytes Memory in use (without page cache).",
        "# TYPE comgov_service_memory_bytes gauge",
        "# HELP comgov_service_network_bytes_total Network bytes received and sent.",
        "# TYPE comgov_service_network_bytes_total counter",
        "# HELP comgov_service_disk_used_bytes Space used on the service's volumes.",
        "# TYPE comgov_service_disk_used_bytes gauge",
        "# HELP comgov_institution_memory_bytes Memory in use by all of an institution's services.",
        "# TYPE comgov_institution_memory_bytes gauge",
    ]
    per_inst: Counter = Counter()
    for svc in services:
        labels = (f'service="{svc.id}",institution="{_label(svc.institution.acronym)}",'
                  f'kind="{_label(svc.kind)}"')
        up = int(svc.status == "running" and svc.health != "unhealthy")
        lines.append(f"comgov_service_up{{{labels}}} {up}")
        sample = latest.get(svc.id)
        if sample is None:
            continue
        lines.append(f"comgov_service_cpu_seconds_total{{{labels}}} {sample.cpu_ns / 1e9:.3f}")
        lines.append(f"comgov_service_memory_bytes{{{labels}}} {sample.memory_bytes}")
        lines.append(f'comgov_service_network_bytes_total{{{labels},direction="rx"}} '
                     f"{sample.net_rx}")
        lines.append(f'comgov_service_network_bytes_total{{{labels},direction="tx"}} '
                     f"{sample.net_tx}")
        if sample.disk_used is not None:
            lines.append(f"comgov_service_disk_used_bytes{{{labels}}} {sample.disk_used}")
        per_inst[svc.institution.acronym] += sample.memory_bytes or 0
    for acronym, mem in sorted(per_inst.items()):
        lines.append(f'comgov_institution_memory_bytes{{institution="{_label(acronym)}"}} {mem}')
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
