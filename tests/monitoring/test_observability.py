"""Metering, health, the operators' dashboard and /metrics on real containers."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Alert, AuditEvent, Service, UsageRollup, UsageSample
from controlplane.monitoring import health, usage
from tests.conftest import run_worker
from tests.requests.test_end_to_end import request_and_approve

pytestmark = pytest.mark.docker


@pytest.fixture
def running_site(docker_app, auth):
    service_id = request_and_approve(auth, "obs.minisante.gov.bi")
    run_worker(docker_app)
    yield service_id
    from controlplane.services import jobs

    with docker_app.app_context():
        jobs.run_service_action(service_id, "delete")


def test_metering_stores_samples_and_rollups(docker_app, running_site):
    with docker_app.app_context():
        assert usage.sample_all() >= 1
        time.sleep(1.1)
        usage.sample_all()
        rows = db.session.scalars(select(UsageSample).where(
            UsageSample.service_id == running_site)).all()
        assert len(rows) == 2 and rows[-1].memory_bytes > 0 and rows[-1].cpu_ns > 0
        assert rows[-1].institution_id is not None
        docker_app.config["METERING_INTERVAL"] = 30
        assert usage.rollup() >= 1
        hour = db.session.scalar(select(UsageRollup).where(
            UsageRollup.period == "hour", UsageRollup.service_id == running_site))
        assert hour.seconds > 0 and hour.memory_byte_seconds > 0
        day = db.session.scalar(select(UsageRollup).where(
            UsageRollup.period == "day", UsageRollup.service_id == running_site))
        assert day.memory_byte_seconds == pytest.approx(hour.memory_byte_seconds)
        usage.rollup()  # idempotent: same rows, recomputed
        assert db.session.query(UsageRollup).filter_by(service_id=running_site,
                                                       period="hour").count() == 1


def test_unhealthy_service_raises_alert_and_recovers(docker_app, running_site, docker_client,
                                                     client, auth):
    prefix = docker_app.config["DOCKER_PREFIX"]
    with docker_app.app_context():
        health.check_all()
        svc = db.session.get(Service, running_site)
        assert svc.health == "healthy", svc.health_detail
        docker_client.containers.get(f"{prefix}-web-{running_site}").stop(timeout=1)
        health.check_all()
        svc = db.session.get(Service, running_site)
        assert svc.health == "unhealthy" and svc.health_changed_at is not None
        alert = db.session.scalar(select(Alert).where(Alert.service_id == running_site,
                                                      Alert.cleared_at.is_(None)))
        assert alert is not None
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "service.unhealthy"))
    auth.login("op.one")
    page = client.get("/ops/dashboard").get_data(as_text=True)
    assert "obs.minisante.gov.bi" in page
    docker_client.containers.get(f"{prefix}-web-{running_site}").start()
    with docker_app.app_context():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            health.check_all()
            if db.session.get(Service, running_site).health == "healthy":
                break
            time.sleep(0.3)
        assert db.session.get(Service, running_site).health == "healthy"
        assert db.session.scalar(select(Alert).where(Alert.service_id == running_site,
                                                     Alert.cleared_at.is_(None))) is None


def test_dashboard_and_metrics(docker_app, running_site, client, auth):
    with docker_app.app_context():
        usage.sample_all()
        time.sleep(1.1)
        usage.sample_all()
        usage.rollup()
    auth.login("op.one")
    page = client.get("/ops/dashboard").get_data(as_text=True)
    assert "MINISANTE" in page and "<svg" in page
    text = client.get("/metrics").get_data(as_text=True)
    assert f'comgov_service_memory_bytes{{service="{running_site}",institution="MINISANTE"' in text
    assert 'comgov_institution_memory_bytes{institution="MINISANTE"}' in text
    auth.logout()
    auth.login("fp.obr")
    assert client.get("/metrics").status_code == 404  # no institution reads the others' figures
    assert client.get("/ops/dashboard").status_code == 404
    auth.logout()
    assert client.get("/metrics").status_code == 404
    docker_app.config["METRICS_TOKEN"] = "s3cret-token"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200 and "comgov_service_up" in response.get_data(as_text=True)


def test_focal_point_usage_page(docker_app, running_site, client, auth):
    auth.login("fp.sante")
    page = client.get("/portal/usage").get_data(as_text=True)
    assert "MINISANTE" in page
