"""Requests and services through the portal: validation, decisions, audit (real Redis, slapd)."""
from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, select

from controlplane.core.extensions import db
from controlplane.core.models import AuditEvent, Request, Service


def count(app, model, **filters) -> int:
    with app.app_context():
        query = select(func.count()).select_from(model)
        for key, value in filters.items():
            query = query.where(getattr(model, key) == value)
        return db.session.scalar(query)


def submit(auth, hostname="www.minisante.gov.bi", size="L"):
    return auth.post("/portal/requests/new/website", {"hostname": hostname, "size": size},
                     page="/portal/requests/new/website")


def test_form_is_prefilled_with_the_domain(client, auth):
    auth.login("fp.sante")
    page = client.get("/portal/requests/new/website").get_data(as_text=True)
    assert 'value="www.minisante.gov.bi"' in page
    assert "sous minisante.gov.bi" in page


def test_submit_records_request_and_audit(app, auth):
    auth.login("fp.sante")
    response = submit(auth)
    assert response.status_code == 302
    with app.app_context():
        req = db.session.scalar(select(Request))
        assert (req.status, req.hostname, req.size, req.kind) == ("submitted", "www.minisante.gov.bi",
                                                                  "L", "website")
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "request.submitted"))
        assert event.actor == "fp.sante" and event.after["hostname"] == "www.minisante.gov.bi"
        assert event.institution_id == req.institution_id


@pytest.mark.parametrize("hostname, size, message", [
    ("www.obr.gov.bi", "S", "domaine de votre institution minisante.gov.bi"),
    ("www..minisante.gov.bi", "S", "n’est pas un nom d’hôte valide"),
    ("www.minisante.gov.bi; rm -rf /", "S", "n’est pas un nom d’hôte valide"),
    ("", "S", "Ce champ est requis"),
    ("www.minisante.gov.bi", "XXL", "Taille inconnue"),
    ("mail.minisante.gov.bi", "L", "mail.minisante.gov.bi est réservé"),
])
def test_bad_input_creates_nothing(app, auth, hostname, size, message):
    auth.login("fp.sante")
    response = submit(auth, hostname, size)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, Request) == 0 and count(app, AuditEvent, action="request.submitted") == 0


def test_hostname_taken_by_open_request(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    response = submit(auth, "WWW.minisante.gov.bi.")
    assert response.status_code == 422
    assert "déjà utilisé ou demandé" in response.get_data(as_text=True)
    assert count(app, Request) == 1


def test_cancel_own_request_only(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    auth.logout()
    auth.login("fp.sante2")
    auth.post("/requests/1/cancel", page="/requests/1")
    assert count(app, Request, status="submitted") == 1
    auth.logout()
    auth.login("fp.sante")
    auth.post("/requests/1/cancel", page="/requests/1")
    assert count(app, Request, status="cancelled") == 1
    # the hostname is free again
    assert submit(auth).status_code == 302


def test_reject_needs_reason_and_is_shown(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    auth.logout()
    auth.login("op.one")
    auth.post("/ops/requests/1/reject", {"reason": ""}, page="/requests/1")
    assert count(app, Request, status="submitted") == 1
    auth.post("/ops/requests/1/reject", {"reason": "Nom réservé à la Présidence"},
              page="/requests/1")
    assert count(app, Request, status="rejected") == 1
    auth.logout()
    auth.login("fp.sante")
    assert "Nom réservé à la Présidence" in client.get("/requests/1").get_data(as_text=True)


def test_approve_creates_service_and_enqueues_one_job(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    auth.logout()
    auth.login("op.one")
    assert "www.minisante.gov.bi" in client.get("/ops/").get_data(as_text=True)
    response = auth.post("/ops/requests/1/approve", page="/requests/1")
    assert response.status_code == 302 and "/services/1" in response.headers["Location"]
    # approving twice does nothing more
    auth.post("/ops/requests/1/approve", page="/requests/1")
    with app.app_context():
        svc = db.session.scalar(select(Service))
        assert (svc.status, svc.hostname, svc.institution.acronym) == (
            "provisioning", "www.minisante.gov.bi", "MINISANTE")
        assert svc.request.status == "approved" and svc.request.decided_by.username == "op.one"
    q = Queue("test", connection=Redis.from_url(app.config["REDIS_URL"]))
    assert q.job_ids == ["service-1-provision"]
    assert q.fetch_job("service-1-provision").args == (1, "provision")
    assert count(app, Service) == 1


def test_approval_with_queue_down_fails_visibly_and_can_be_retried(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    auth.logout()
    auth.login("op.one")
    good = app.config["REDIS_URL"]
    from devtools import devstack

    app.config["REDIS_URL"] = f"redis://127.0.0.1:{devstack.free_port()}/0"
    app.extensions.pop("redis", None)
    auth.post("/ops/requests/1/approve", page="/requests/1")
    with app.app_context():
        svc = db.session.get(Service, 1)
        assert svc.status == "failed" and "queue" in svc.error
    app.config["REDIS_URL"] = good
    app.extensions.pop("redis", None)
    page = client.get("/services/1").get_data(as_text=True)
    assert "Réessayer" in page
    auth.post("/services/1/actions/retry", page="/services/1")
    assert count(app, Service, status="provisioning") == 1
    assert Queue("test", connection=Redis.from_url(good)).job_ids == ["service-1-provision"]


def test_auditor_reads_but_never_writes(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    auth.logout()
    auth.login("au.one")
    assert client.get("/requests/1").status_code == 200
    assert client.get("/audit/").status_code == 200
    assert client.get("/ops/requests").status_code == 200
    assert auth.post("/ops/requests/1/approve", page="/audit/").status_code == 403
    assert auth.post("/ops/requests/1/reject", {"reason": "x"}, page="/audit/").status_code == 403
    assert auth.post("/portal/requests/new/website", {"hostname": "www.minisante.gov.bi",
                                                      "size": "S"}, page="/audit/").status_code == 403
    assert count(app, Request, status="submitted") == 1


def test_focal_point_cannot_approve(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    assert auth.post("/ops/requests/1/approve", page="/portal/").status_code == 404
    assert client.get("/ops/").status_code == 404
    assert count(app, Request, status="submitted") == 1


def test_audit_filters(app, client, auth):
    auth.login("fp.sante")
    submit(auth)
    auth.logout()
    auth.login("au.one")
    page = client.get("/audit/?actor=fp.sante&action=request.").get_data(as_text=True)
    assert "request.submitted" in page and "account.login" not in page
    page = client.get("/audit/?from=2000-01-01&to=2000-01-02").get_data(as_text=True)
    assert "request.submitted" not in page
    assert client.get("/audit/?from=garbage&page=x").status_code == 200
