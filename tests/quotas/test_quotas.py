"""Quotas on the real database: refusals with reasons, locks, approvals, exceptions, plans."""
from __future__ import annotations

import threading

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, select

from controlplane.core.extensions import db
from controlplane.core.models import Account, AuditEvent, Institution, QuotaGrant, Request, Service
from controlplane.core.transitions import LifecycleError
from controlplane.quotas import allocation as quotas
from controlplane.requests.lifecycle import submit_request


def submit(auth, hostname, size="L"):
    return auth.post("/portal/requests/new/website", {"hostname": hostname, "size": size},
                     page="/portal/requests/new/website")


def count(app, **filters) -> int:
    with app.app_context():
        query = select(func.count()).select_from(Request)
        for key, value in filters.items():
            query = query.where(getattr(Request, key) == value)
        return db.session.scalar(query)


def fill_websites(auth, n=5):
    for i in range(n):
        assert submit(auth, f"s{i}.minisante.gov.bi", "M").status_code == 302


def test_form_shows_remaining_quota_and_fit(client, auth):
    auth.login("fp.sante")
    page = client.get("/portal/requests/new/website").get_data(as_text=True)
    assert "Quota" in page and "approuvé automatiquement" in page.replace("approuvée", "approuvé")


def test_beyond_quota_refused_with_exact_reason(app, client, auth):
    auth.login("fp.sante")
    fill_websites(auth)  # the ministry plan allows 5 websites; waiting requests count
    response = submit(auth, "s5.minisante.gov.bi", "M")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "plan « ministère »" in page and "0 restant sur 5" in page
    assert count(app) == 5


def test_decision_is_stored_and_shown(app, client, auth):
    auth.login("fp.sante")
    submit(auth, "www.minisante.gov.bi", "L")
    with app.app_context():
        req = db.session.scalar(select(Request))
        assert req.decision["allowed"] and req.decision["approvals_needed"] == 1
        rule = req.decision["rule"]
    page = client.get(f"/requests/{req.id}").get_data(as_text=True)
    assert rule in page
    auth.logout()
    auth.login("au.one")
    assert rule in client.get(f"/requests/{req.id}").get_data(as_text=True)


def test_small_request_is_approved_automatically(app, client, auth):
    auth.login("fp.sante")
    submit(auth, "petit.minisante.gov.bi", "S")
    with app.app_context():
        req = db.session.scalar(select(Request))
        assert req.status == "approved" and req.decision["automatic"]
        assert req.service.status == "provisioning"
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "request.approved"))
        assert event.actor == "system"
    assert Queue("test", connection=Redis.from_url(app.config["REDIS_URL"])).job_ids == [
        "service-1-provision"]


def test_concurrent_submissions_cannot_exceed_the_quota(app, auth):
    auth.login("fp.sante")
    fill_websites(auth, 4)  # one website left
    auth.logout()
    auth.login("fp.sante2")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def attempt(i: int):
        with app.app_context():
            actor = db.session.scalar(select(Account).where(Account.username == "fp.sante2"))
            actor.institution  # load before the race
            barrier.wait()
            try:
                submit_request(actor, "website", {"hostname": f"race{i}.minisante.gov.bi",
                                                  "size": "M"})
                outcomes.append("ok")
            except LifecycleError as exc:
                outcomes.append(str(exc.message))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("ok") == 1, outcomes
    assert all("restant sur 5" in o or "remaining" in o or "left of 5" in o
               for o in outcomes if o != "ok"), outcomes
    assert count(app) == 5


def test_quota_increase_needs_two_different_operators(app, client, auth):
    auth.login("fp.sante")
    fill_websites(auth)
    response = auth.post("/portal/quota/new", {
        "resource": "services.website", "amount": "2",
        "justification": "Nouveau portail de la campagne de vaccination 2027"},
        page="/portal/quota/new")
    assert response.status_code == 302
    request_id = int(response.headers["Location"].rsplit("/", 1)[1])
    auth.logout()
    auth.login("op.one")
    auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}")
    page = auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}",
                     follow_redirects=True).get_data(as_text=True)
    assert "déjà approuvé" in page
    with app.app_context():
        assert db.session.get(Request, request_id).status == "submitted"
        assert db.session.scalar(select(func.count()).select_from(QuotaGrant)) == 0
        # a second operator, mirrored like any login
        from controlplane.core.infra import directory_config
        from provisioners.directory import tree as directory

        directory.ensure_person(directory_config(), uid="op.two", full_name="Op Two",
                                mail="op.two@example.gov.bi", password="Test-pass-2026!",
                                role="operator")
    auth.logout()
    auth.login("op.two")
    auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}")
    with app.app_context():
        grant = db.session.scalar(select(QuotaGrant))
        assert grant.resource == "services.website" and grant.amount == 2
        assert sorted(grant.approvers) == ["op.one", "op.two"]
        assert db.session.get(Request, request_id).status == "active"
    auth.logout()
    auth.login("au.one")
    page = client.get("/audit/quota-grants").get_data(as_text=True)
    assert "op.one" in page and "op.two" in page and "vaccination" in page
    auth.logout()
    auth.login("fp.sante")
    assert submit(auth, "s5.minisante.gov.bi", "M").status_code == 302  # now it fits


@pytest.mark.parametrize("data, message", [
    ({"resource": "services.website", "amount": "0"}, ""),
    ({"resource": "services.website", "amount": "-3"}, ""),
    ({"resource": "memory_mib", "amount": "999999999999"}, ""),
    ({"resource": "unicorns", "amount": "2"}, ""),
    ({"resource": "cpu", "amount": "beaucoup"}, ""),
    ({"resource": "cpu", "amount": "1", "justification": "svp"}, ""),
])
def test_bad_quota_requests_create_nothing(app, client, auth, data, message):
    auth.login("fp.sante")
    payload = {"justification": "Une justification suffisamment longue pour passer."}
    payload.update(data)
    response = auth.post("/portal/quota/new", payload, page="/portal/quota/new")
    assert response.status_code == 422
    assert 'class="flash error"' in response.get_data(as_text=True)
    assert count(app) == 0


def test_plan_change_refused_with_what_is_over(app, client, auth):
    auth.login("fp.sante")
    fill_websites(auth)
    auth.logout()
    auth.login("op.one")
    with app.app_context():
        inst_id = db.session.scalar(select(Institution.id).where(Institution.acronym == "MINISANTE"))
    response = auth.post(f"/ops/institutions/{inst_id}", {"plan": "agency"},
                         page=f"/ops/institutions/{inst_id}")
    assert response.status_code == 409
    assert "sites web" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Institution, inst_id).plan_name == "ministry"
    response = auth.post(f"/ops/institutions/{inst_id}", {"plan": "presidency"},
                         page=f"/ops/institutions/{inst_id}")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(Institution, inst_id).plan == "presidency"


def test_plan_edit_refused_when_an_institution_would_be_over(app, client, auth):
    auth.login("fp.sante")
    fill_websites(auth, 3)
    auth.logout()
    auth.login("op.one")
    with app.app_context():
        values = quotas.plan("ministry").quota.to_dict()
    form = {k: v for k, v in values.items() if k != "services"}
    form.update({f"services.{k}": v for k, v in values["services"].items()})
    form.update({"plan": "ministry", "services.website": 2})
    response = auth.post("/ops/plans", form, page="/ops/plans")
    assert response.status_code == 409 and "MINISANTE" in response.get_data(as_text=True)
    form["services.website"] = 4
    assert auth.post("/ops/plans", form, page="/ops/plans").status_code == 302
    with app.app_context():
        assert quotas.plan("ministry").quota.get("services.website") == 4
    form["cpu"] = "-1"
    assert auth.post("/ops/plans", form, page="/ops/plans").status_code == 409


def test_resize_counts_only_the_increase(app, client, auth):
    auth.login("fp.sante")
    submit(auth, "petit.minisante.gov.bi", "S")  # approved automatically
    with app.app_context():
        svc = db.session.scalar(select(Service))
        svc.status, svc.pending_action = "running", None
        db.session.commit()
        service_id = svc.id
    response = auth.post(f"/services/{service_id}/resize", {"size": "L"},
                         page=f"/services/{service_id}")
    assert response.status_code == 302
    with app.app_context():
        resize = db.session.scalar(select(Request).where(Request.id != 1))
        assert resize.params == {"resize_of": service_id, "current_size": "S"}
        held = quotas.allocated(resize.institution_id)
        large = app.extensions["policies"].size("website", "L")
        assert held.memory_mib == large.memory_mib  # S held by the service + (L - S) reserved
    page = auth.post(f"/services/{service_id}/resize", {"size": "L"},
                     page=f"/services/{service_id}", follow_redirects=True).get_data(as_text=True)
    assert "déjà en attente" in page


def test_resize_to_less_disk_is_refused(app, client, auth):
    auth.login("fp.sante")
    submit(auth, "grand.minisante.gov.bi", "L")
    with app.app_context():
        req = db.session.scalar(select(Request))
        svc = Service(institution_id=req.institution_id, request_id=req.id, kind="website",
                      hostname="grand.minisante.gov.bi", size="L", status="running")
        req.status = "active"
        db.session.add(svc)
        db.session.commit()
        service_id = svc.id
    page = auth.post(f"/services/{service_id}/resize", {"size": "S"},
                     page=f"/services/{service_id}", follow_redirects=True)
    assert 'class="flash error"' in page.get_data(as_text=True)
    assert count(app) == 1


def test_an_edited_plan_applies_to_new_requests(app, client, auth):
    auth.login("fp.sante")
    fill_websites(auth, 2)
    auth.logout()
    auth.login("op.one")
    with app.app_context():
        values = quotas.plan("ministry").quota.to_dict()
    form = {k: v for k, v in values.items() if k != "services"}
    form.update({f"services.{k}": v for k, v in values["services"].items()})
    form.update({"plan": "ministry", "services.website": 2})
    assert auth.post("/ops/plans", form, page="/ops/plans").status_code == 302
    auth.logout()
    auth.login("fp.sante")
    response = submit(auth, "s9.minisante.gov.bi", "M")
    assert response.status_code == 422
    assert "0 restant sur 2" in response.get_data(as_text=True)
