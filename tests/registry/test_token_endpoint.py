"""GET /v2/token: HTTP Basic credentials in, a JWT the registry trusts out, with the access the
rules allow (and nothing for bad credentials)."""
from __future__ import annotations

import base64

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Account, AuditEvent, Institution, RegistryRobot
from controlplane.registry import robots
from tests.conftest import PASSWORD


def _basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _get(client, user=None, password=None, scopes=(), service=None):
    query = [("scope", s) for s in scopes]
    if service is not None:
        query.append(("service", service))
    headers = _basic(user, password) if user is not None else {}
    return client.get("/v2/token", query_string=query, headers=headers)


def _claims(registry, body: dict) -> tuple[dict, dict]:
    cert = x509.load_pem_x509_certificate((registry["auth_dir"] / "token.crt").read_bytes())
    header = jwt.get_unverified_header(body["token"])
    claims = jwt.decode(body["token"], cert.public_key(), algorithms=["ES256"],
                        audience=registry["service"], issuer=registry["issuer"])
    return header, claims


@pytest.fixture
def token_client(registry_app):
    return registry_app.test_client()


def test_docker_login_without_scope_gets_a_token_granting_nothing(token_client, registry):
    resp = _get(token_client, "fp.sante", PASSWORD, service=registry["service"])
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300 and body["issued_at"].endswith("Z")
    header, claims = _claims(registry, body)
    # the certificate the registry trusts travels in x5c (distribution 2.8 checks the chain)
    cert = x509.load_pem_x509_certificate((registry["auth_dir"] / "token.crt").read_bytes())
    assert base64.b64decode(header["x5c"][0]) == cert.public_bytes(Encoding.DER)
    assert header["alg"] == "ES256"
    assert claims["sub"] == "fp.sante" and claims["access"] == []
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) >= 16


def test_a_focal_point_gets_its_namespace_and_platform_pulls(token_client, registry):
    resp = _get(token_client, "fp.sante", PASSWORD, scopes=[
        "repository:minisante/portail:pull,push", "repository:obr/x:pull,push",
        "repository:comgov/base:pull,push", "registry:catalog:*"])
    assert resp.status_code == 200
    assert _claims(registry, resp.get_json())[1]["access"] == [
        {"type": "repository", "name": "minisante/portail", "actions": ["pull", "push"]},
        {"type": "repository", "name": "comgov/base", "actions": ["pull"]}]


def test_an_operator_and_the_platform_push_platform_images(token_client, registry):
    scopes = ["repository:comgov/nginx:pull,push", "repository:minisante/x:pull"]
    expected = [{"type": "repository", "name": "comgov/nginx", "actions": ["pull", "push"]}]
    resp = _get(token_client, "op.one", PASSWORD, scopes=scopes)
    assert _claims(registry, resp.get_json())[1]["access"] == expected
    platform = registry["settings"]["REGISTRY_PLATFORM_PASSWORD"]
    resp = _get(token_client, "platform$comgov", platform, scopes=scopes)
    assert resp.status_code == 200
    header, claims = _claims(registry, resp.get_json())
    assert claims["sub"] == "platform$comgov" and claims["access"] == expected


def test_an_auditor_only_pulls_platform_images(token_client, registry):
    resp = _get(token_client, "au.one", PASSWORD, scopes=["repository:comgov/nginx:pull,push"])
    assert _claims(registry, resp.get_json())[1]["access"] == [
        {"type": "repository", "name": "comgov/nginx", "actions": ["pull"]}]


@pytest.mark.parametrize("user,password", [
    ("fp.sante", "wrong"), ("nobody", PASSWORD), ("platform$comgov", "wrong"),
    ("robot$minisante+nope", "x" * 43), ("robot$", "x"), ("fp.sante", "x" * 2000),
])
def test_bad_credentials_get_401_json(token_client, user, password):
    resp = _get(token_client, user, password, scopes=["repository:minisante/x:pull"])
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    assert resp.get_json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert "token" not in resp.get_json()


def test_no_credentials_get_401(token_client):
    resp = _get(token_client, scopes=["repository:comgov/base:pull"])
    assert resp.status_code == 401 and resp.get_json()["errors"][0]["code"] == "UNAUTHORIZED"
    resp = token_client.get("/v2/token", headers={"Authorization": "Bearer abc"})
    assert resp.status_code == 401


def test_the_platform_account_is_off_without_its_secret(registry_app, token_client):
    registry_app.config["REGISTRY_PLATFORM_PASSWORD"] = None
    assert _get(token_client, "platform$comgov", "None").status_code == 401
    assert _get(token_client, "platform$comgov", "").status_code == 401


def test_another_service_is_refused(token_client):
    resp = _get(token_client, "fp.sante", PASSWORD, service="someone-else")
    assert resp.status_code == 400 and resp.get_json()["errors"]


def test_a_missing_signing_key_answers_503(registry_app, token_client, tmp_path):
    registry_app.config["REGISTRY_TOKEN_KEY"] = str(tmp_path / "none.key")
    resp = _get(token_client, "fp.sante", PASSWORD)
    assert resp.status_code == 503 and resp.get_json()["errors"][0]["code"] == "UNAVAILABLE"


def test_the_endpoint_is_rate_limited_in_json(registry_app, token_client):
    registry_app.config["RATELIMIT_REGISTRY_TOKEN"] = "2 per minute"
    codes = [_get(token_client, "fp.sante", "wrong").status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    resp = _get(token_client, "fp.sante", "wrong")
    assert resp.get_json()["errors"][0]["code"] == "TOOMANYREQUESTS"


def _make_robot(app, acronym="MINISANTE", name="ci", days=None):
    with app.app_context():
        inst = db.session.scalar(select(Institution).where(Institution.acronym == acronym))
        actor = Account(username=f"op-{name}", dn="uid=x", role="operator")
        db.session.add(actor)
        db.session.commit()
        robot, secret = robots.create(actor, inst, name, days)
        return robot.id, robots.login_name(robot), secret


def test_a_robot_token_grants_its_institution_and_is_audited(registry_app, token_client,
                                                             registry):
    robot_id, user, secret = _make_robot(registry_app)
    assert user == "robot$minisante+ci"
    resp = _get(token_client, user, secret, scopes=["repository:minisante/x:pull,push",
                                                    "repository:comgov/base:pull"])
    assert resp.status_code == 200
    header, claims = _claims(registry, resp.get_json())
    assert claims["sub"] == user
    assert claims["access"] == [
        {"type": "repository", "name": "minisante/x", "actions": ["pull", "push"]}]
    with registry_app.app_context():
        robot = db.session.get(RegistryRobot, robot_id)
        assert robot.last_used_at is not None
        assert robot.secret_sha256 == robots.hash_secret(secret) and secret not in str(
            [robot.secret_sha256, robot.name])
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.target_type == "registry_robot").order_by(AuditEvent.id)).all()
        assert [e.action for e in events] == ["registry.robot_created", "registry.robot_used"]
        assert events[1].after["granted"] == ["minisante/x:pull,push"]
        assert all(secret not in str(e.after) for e in events)


def test_a_revoked_or_expired_robot_gets_nothing(registry_app, token_client):
    robot_id, user, secret = _make_robot(registry_app, name="old")
    with registry_app.app_context():
        robot = db.session.get(RegistryRobot, robot_id)
        robots.revoke(db.session.scalar(select(Account).where(Account.username == "op-old")),
                      robot)
    assert _get(token_client, user, secret).status_code == 401

    robot_id, user, secret = _make_robot(registry_app, name="short", days=1)
    assert _get(token_client, user, secret).status_code == 200
    with registry_app.app_context():
        robot = db.session.get(RegistryRobot, robot_id)
        robot.expires_at = robot.created_at
        db.session.commit()
    assert _get(token_client, user, secret).status_code == 401


def test_a_robot_of_one_institution_cannot_pose_as_another(registry_app, token_client):
    _id, user, secret = _make_robot(registry_app, acronym="OBR", name="ci")
    assert _get(token_client, "robot$minisante+ci", secret).status_code == 401
    assert _get(token_client, user, secret).status_code == 200
