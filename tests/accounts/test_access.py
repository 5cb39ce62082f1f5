"""A focal point never sees or touches another institution: every route with its ids is 404."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import (
    Account,
    Backup,
    Deployment,
    Institution,
    Mailbox,
    RegistryRobot,
    Request,
    Service,
    Task,
)


@pytest.fixture
def obr_objects(app, auth):
    """A request and a service of OBR, created as OBR's focal point would have."""
    auth.login("fp.obr")
    auth.logout()
    with app.app_context():
        obr = db.session.scalar(select(Institution).where(Institution.acronym == "OBR"))
        author = db.session.scalar(select(Account).where(Account.username == "fp.obr"))
        req = Request(institution_id=obr.id, author_id=author.id, kind="website",
                      hostname="www.obr.gov.bi", size="S", status="submitted")
        done = Request(institution_id=obr.id, author_id=author.id, kind="website",
                       hostname="portail.obr.gov.bi", size="S", status="active")
        db.session.add_all([req, done])
        db.session.flush()
        svc = Service(institution_id=obr.id, request_id=done.id, kind="website",
                      hostname="portail.obr.gov.bi", size="S", status="running")
        db.session.add(svc)
        task = Task(id="statements-obr", kind="statements", owner_id=author.id,
                    params={"month": "2026-10"}, status="done", result_path="/tmp")
        db.session.add(task)
        db.session.commit()
        backup = Backup(service_id=svc.id, institution_id=obr.id, trigger="manual",
                        path="/nonexistent")
        box = Mailbox(institution_id=obr.id, address="recettes@obr.gov.bi", quota_mib=256)
        robot = RegistryRobot(institution_id=obr.id, name="ci", secret_sha256="0" * 64,
                              created_by_id=author.id)
        deployment = Deployment(service_id=svc.id, institution_id=obr.id, repository="obr/web",
                                digest="sha256:" + "1" * 64, tag="1", trigger="push",
                                status="deployed")
        db.session.add_all([backup, box, robot, deployment])
        db.session.commit()
        return {"request_id": req.id, "service_id": svc.id, "task_id": task.id,
                "institution_id": obr.id, "backup_id": backup.id, "mailbox_id": box.id,
                "robot_id": robot.id, "deployment_id": deployment.id}


def all_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        yield rule


def fill(rule, ids) -> str | None:
    path = rule.rule
    for name in rule.arguments:
        if name in ids:
            path = path.replace(f"<int:{name}>", str(ids[name])).replace(f"<{name}>",
                                                                         str(ids[name]))
        elif name == "action":
            path = path.replace("<action>", "stop" if "/mail/" not in path else "disable")
        elif name == "fmt":
            path = path.replace("<fmt>", "csv")
        else:
            return None
    return path


def test_every_route_with_another_institutions_ids_is_404(app, client, auth, obr_objects):
    auth.login("fp.sante")
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      client.get("/portal/").get_data(as_text=True)).group(1)
    tried = 0
    for rule in all_routes(app):
        if not any(arg.endswith("_id") for arg in rule.arguments):
            continue
        path = fill(rule, obr_objects)
        assert path, f"route {rule.rule} has an id this test does not know; add it"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method == "GET":
                response = client.get(path)
            else:
                response = client.post(path, data={"csrf_token": token, "reason": "x"})
            assert response.status_code == 404, f"{method} {path} -> {response.status_code}"
            tried += 1
    assert tried >= 8
    with app.app_context():
        assert db.session.get(Request, obr_objects["request_id"]).status == "submitted"
        assert db.session.get(Service, obr_objects["service_id"]).status == "running"


def test_lists_show_only_own_institution(app, client, auth, obr_objects):
    auth.login("fp.sante")
    page = client.get("/portal/").get_data(as_text=True)
    assert "obr.gov.bi" not in page


def test_operator_sees_every_institution(app, client, auth, obr_objects):
    auth.login("op.one")
    assert client.get(f"/services/{obr_objects['service_id']}").status_code == 200
    assert "portail.obr.gov.bi" in client.get("/ops/services").get_data(as_text=True)
    assert "www.obr.gov.bi" in client.get("/ops/").get_data(as_text=True)


# Endpoints only machines call, authenticated by a secret rather than a session and a form.
MACHINE_ENDPOINTS = {"/registry/events"}


def test_every_post_route_needs_csrf(app, client, auth, obr_objects):
    auth.login("op.one")
    for rule in all_routes(app):
        if "POST" not in rule.methods:
            continue
        path = fill(rule, dict(obr_objects, code="en")) or rule.rule.replace("<code>", "en")
        response = client.post(path, data={"reason": "x"})
        if rule.rule in MACHINE_ENDPOINTS:  # no browser posts there: a shared secret instead
            assert response.status_code in (401, 403, 404), f"POST {path} -> {response.status_code}"
            continue
        assert response.status_code == 400, f"POST {path} without token -> {response.status_code}"
