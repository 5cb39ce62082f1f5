"""The robot accounts' page: focal points (their institution only) and operators create and
revoke; auditors read; the secret is shown once; CSRF and roles on every route."""
from __future__ import annotations

import html as htmllib
import re

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import AuditEvent, Institution, RegistryRobot
from controlplane.registry import robots

PAGE = "/registry/robots"


@pytest.fixture
def page_app(registry_app):
    return registry_app


def _create(auth, name: str, **extra):
    return auth.post(PAGE, {"name": name, **extra}, page=PAGE)


def _secret(html: str) -> str:
    return re.search(r'<code id="robot-secret">([^<]+)</code>', html).group(1)


def _robot(app, name: str) -> RegistryRobot:
    with app.app_context():
        robot = db.session.scalar(select(RegistryRobot).where(RegistryRobot.name == name))
        db.session.expunge(robot)
        return robot


def test_a_focal_point_creates_a_robot_and_sees_its_secret_once(page_app, auth, registry):
    auth.login("fp.sante")
    resp = _create(auth, "ci")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html[-2000:]
    assert resp.headers["Cache-Control"] == "no-store"
    secret = _secret(html)
    assert len(secret) >= 43
    assert (f"echo '{secret}' | docker login {registry['address']} --username "
            "'robot$minisante+ci' --password-stdin") in htmllib.unescape(html)
    with page_app.app_context():
        robot = db.session.scalar(select(RegistryRobot).where(RegistryRobot.name == "ci"))
        assert robot.institution.acronym == "MINISANTE"
        assert robot.secret_sha256 == robots.hash_secret(secret)
        assert robot.created_by.username == "fp.sante"
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "registry.robot_created"))
        assert event.actor == "fp.sante" and event.after["login"] == "robot$minisante+ci"
    listing = auth.client.get(PAGE).get_data(as_text=True)
    assert "robot$minisante+ci" in listing and secret not in listing


def test_names_are_checked_and_unique_among_live_robots(page_app, auth):
    auth.login("fp.sante")
    assert _create(auth, "Bad Name!").status_code == 422
    assert _create(auth, "-ci").status_code == 422
    assert _create(auth, "ci", days="0").status_code == 422
    assert _create(auth, "ci", days="30").status_code == 200
    assert _robot(page_app, "ci").expires_at is not None
    resp = _create(auth, "ci")
    assert resp.status_code == 422 and "existe déjà" in resp.get_data(as_text=True)


def test_focal_points_see_and_revoke_only_their_institution(page_app, auth, client):
    auth.login("fp.sante")
    _create(auth, "ci")
    robot = _robot(page_app, "ci")
    auth.logout()

    auth.login("fp.obr")
    assert "robot$minisante+ci" not in client.get(PAGE).get_data(as_text=True)
    assert auth.post(f"{PAGE}/{robot.id}/revoke", page=PAGE).status_code == 404
    assert _robot(page_app, "ci").revoked_at is None
    # an OBR focal point's robot is OBR's, whatever the form says
    _create(auth, "deploy", institution=str(robot.institution_id))
    assert _robot(page_app, "deploy").institution_id != robot.institution_id
    auth.logout()

    auth.login("fp.sante2")
    resp = auth.post(f"{PAGE}/{robot.id}/revoke", page=PAGE)
    assert resp.status_code == 302
    assert _robot(page_app, "ci").revoked_at is not None
    html = client.get(PAGE).get_data(as_text=True)
    assert "revoked on" in html or "révoqué" in html
    with page_app.app_context():
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "registry.robot_revoked"))
        assert event.actor == "fp.sante2" and event.target_id == robot.id


def test_operators_create_for_any_institution_and_see_all(page_app, auth, client):
    with page_app.app_context():
        obr = db.session.scalar(select(Institution).where(Institution.acronym == "OBR"))
    auth.login("op.one")
    assert _create(auth, "ci").status_code == 422  # an institution must be chosen
    resp = _create(auth, "ci", institution=str(obr.id))
    assert resp.status_code == 200, resp.get_data(as_text=True)[-2000:]
    assert "robot$obr+ci" in resp.get_data(as_text=True)
    robot = _robot(page_app, "ci")
    assert robot.institution_id == obr.id
    assert auth.post(f"{PAGE}/{robot.id}/revoke", page=PAGE).status_code == 302
    assert _robot(page_app, "ci").revoked_at is not None


def test_auditors_read_but_do_not_change(page_app, auth, client):
    auth.login("fp.sante")
    _create(auth, "ci")
    robot = _robot(page_app, "ci")
    auth.logout()
    auth.login("au.one")
    html = client.get(PAGE).get_data(as_text=True)
    assert "robot$minisante+ci" in html and 'name="name"' not in html
    assert _create(auth, "x").status_code == 403
    assert auth.post(f"{PAGE}/{robot.id}/revoke", page=PAGE).status_code == 403
    assert _robot(page_app, "ci").revoked_at is None


def test_every_route_needs_a_login_and_forms_need_csrf(page_app, auth, client):
    assert client.get(PAGE).status_code == 302
    assert client.post(PAGE, data={"name": "x"}).status_code in (302, 400)
    auth.login("fp.sante")
    assert client.post(PAGE, data={"name": "x"}).status_code == 400
    assert client.post(f"{PAGE}/1/revoke").status_code == 400
    with page_app.app_context():
        assert db.session.scalar(select(RegistryRobot)) is None
