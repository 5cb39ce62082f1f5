"""The real Docker CLI and Engine against the real registry, with tokens from the portal.

Item 7 of the registry issue: a robot token pushes and pulls its institution's namespace only;
another institution's namespace and `comgov/` are refused by the registry itself; a revoked
robot no longer pulls; an operator pushes `comgov/`.
"""
from __future__ import annotations

import secrets

import pytest
import requests
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Account, AuditEvent, Institution, RegistryRobot
from controlplane.registry import robots, tokens
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.docker]


def _robot(app, acronym: str = "MINISANTE", name: str | None = None) -> tuple[int, str, str]:
    """A robot account made the way the page makes it: (id, user name, secret)."""
    with app.app_context():
        institution = db.session.scalar(select(Institution).where(Institution.acronym == acronym))
        actor = db.session.scalar(select(Account).where(Account.username == "op.one"))
        if actor is None:
            actor = Account(username="op.one", dn="uid=op.one", role="operator")
            db.session.add(actor)
            db.session.commit()
        robot, secret = robots.create(actor, institution, name or f"ci-{secrets.token_hex(3)}")
        return robot.id, robots.login_name(robot), secret


def _registry_answer(registry, token_url: str, user: str, password: str, repository: str):
    """Ask the token endpoint as `docker push` would, then start an upload with that token:
    the registry's own answer (status and challenge)."""
    auth = requests.get(f"{token_url}/v2/token", auth=(user, password), timeout=10, params={
        "service": registry["service"], "scope": f"repository:{repository}:pull,push"})
    assert auth.status_code == 200, auth.text
    resp = requests.post(f"{registry['url']}/v2/{repository}/blobs/uploads/", timeout=10,
                         headers={"Authorization": f"Bearer {auth.json()['token']}"})
    return resp


def _catalog(app) -> list[str]:
    with app.app_context(), tokens.api_client() as api:
        return api.catalog()


def test_a_robot_pushes_and_pulls_its_namespace_only(registry_app, registry, token_server,
                                                     docker_cli, tiny_image):
    _id, user, secret = _robot(registry_app)
    docker_cli.login(user, secret)

    mine = docker_cli.tag(tiny_image, "minisante/x:1")
    docker_cli.push(mine)
    docker_cli.untag(mine)
    docker_cli.pull(mine)

    for repository in ("obr/x", "comgov/x"):
        ref = docker_cli.tag(tiny_image, f"{repository}:1")
        result = docker_cli.push(ref, check=False)
        assert result.returncode != 0
        err = result.stderr.decode(errors="replace").lower()
        assert "denied" in err or "unauthorized" in err or "authentication required" in err, err
        # The refusal is the registry's: with the token the portal issued for this scope, the
        # registry answers 401 insufficient_scope to an upload.
        answer = _registry_answer(registry, token_server, user, secret, repository)
        assert answer.status_code == 401
        assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]

    catalog = _catalog(registry_app)
    assert "minisante/x" in catalog
    assert "obr/x" not in catalog and "comgov/x" not in catalog
    with registry_app.app_context():
        used = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "registry.robot_used")).all()
        granted = {g for e in used for g in e.after["granted"]}
        assert {"minisante/x:push,pull", "minisante/x:pull"} <= granted
        assert not [g for g in granted if not g.startswith("minisante/")]
        robot = db.session.scalar(select(RegistryRobot).where(RegistryRobot.id == _id))
        assert robot.last_used_at is not None


def test_a_revoked_robot_no_longer_pulls(registry_app, registry, token_server, docker_cli,
                                         tiny_image):
    robot_id, user, secret = _robot(registry_app)
    repository = f"minisante/revoked-{secrets.token_hex(3)}:1"
    docker_cli.login(user, secret)
    ref = docker_cli.tag(tiny_image, repository)
    docker_cli.push(ref)
    docker_cli.untag(ref)
    docker_cli.pull(ref)
    docker_cli.untag(ref)

    with registry_app.app_context():
        robot = db.session.get(RegistryRobot, robot_id)
        actor = db.session.scalar(select(Account).where(Account.username == "op.one"))
        assert robots.revoke(actor, robot)

    result = docker_cli.pull(ref, check=False)
    assert result.returncode != 0
    err = result.stderr.decode(errors="replace").lower()
    assert "unauthorized" in err or "denied" in err, err
    assert docker_cli.login(user, secret, check=False).returncode != 0
    token = requests.get(f"{token_server}/v2/token", auth=(user, secret), timeout=10,
                         params={"scope": f"repository:{repository.split(':')[0]}:pull"})
    assert token.status_code == 401


def test_an_operator_pushes_platform_images(registry_app, registry, token_server, docker_cli,
                                            tiny_image):
    docker_cli.login("op.one", PASSWORD)
    ref = docker_cli.tag(tiny_image, f"comgov/test-{secrets.token_hex(3)}:1")
    docker_cli.push(ref)
    # and a focal point pulls it, but may not overwrite it
    docker_cli.untag(ref)
    docker_cli.login("fp.sante", PASSWORD)
    docker_cli.pull(ref)
    assert docker_cli.push(ref, check=False).returncode != 0
