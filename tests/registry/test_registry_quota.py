"""The registry quota at token time: a push token for an institution's namespace that has reached
its plan's `registry_mib` is refused with a JSON error saying so; pulls still work; the real
Docker CLI shows the reason."""
from __future__ import annotations

import base64
import dataclasses
import secrets

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Account, Institution
from controlplane.registry import robots, tokens
from tests.conftest import PASSWORD

MiB = 1024 * 1024


def _basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}", "Accept-Language": "en"}


@pytest.fixture
def set_quota(registry_app, monkeypatch):
    """Change a plan's registry quota (MiB) for this test only."""
    plans = registry_app.extensions["policies"].plans

    def set_(mib: int, plan: str = "ministry") -> None:
        monkeypatch.setitem(plans, plan, dataclasses.replace(plans[plan], registry_mib=mib))

    return set_


def _token(client, user, password, scope):
    return client.get("/v2/token", query_string={"scope": scope}, headers=_basic(user, password))


def test_a_full_namespace_gets_no_push_token_but_still_pulls(registry_app, set_quota):
    client = registry_app.test_client()
    set_quota(0)  # MINISANTE is a ministry: its namespace is full with nothing in it
    resp = _token(client, "fp.sante", PASSWORD, "repository:minisante/portail:pull,push")
    assert resp.status_code == 403
    assert resp.headers["Cache-Control"] == "no-store"
    error = resp.get_json()["errors"][0]
    assert error["code"] == "DENIED"
    assert "minisante/ has reached its quota" in error["message"]
    assert "0 MiB" in error["message"] and "Images page" in error["message"]

    resp = _token(client, "fp.sante", PASSWORD, "repository:minisante/portail:pull")
    assert resp.status_code == 200
    # pull of the platform's images is not concerned either
    resp = _token(client, "fp.obr", PASSWORD, "repository:obr/x:pull,push")
    assert resp.status_code == 200  # OBR is an agency: its plan is untouched

    set_quota(1024)
    resp = _token(client, "fp.sante", PASSWORD, "repository:minisante/portail:pull,push")
    assert resp.status_code == 200


def test_the_usage_is_what_the_registry_holds_for_the_namespace(registry_app, set_quota):
    with registry_app.app_context():
        use = tokens.namespace_use("minisante", fresh=True)
        assert use.institution.acronym == "MINISANTE"
        assert use.quota == registry_app.extensions["policies"].plans["ministry"].registry_bytes
        assert tokens.namespace_use("comgov").institution is None
        assert tokens.full_namespace(["comgov"]) is None  # never the platform's namespace
        set_quota(0)
        assert tokens.full_namespace(["obr", "minisante"]).namespace == "minisante"


@pytest.mark.docker
def test_docker_push_is_refused_with_the_reason_once_the_quota_is_reached(
        registry_app, registry, token_server, docker_cli, tiny_image, set_quota):
    with registry_app.app_context():
        institution = db.session.scalar(select(Institution)
                                        .where(Institution.acronym == "MINISANTE"))
        actor = db.session.scalar(select(Account).where(Account.username == "op.one"))
        if actor is None:
            actor = Account(username="op.one", dn="uid=op.one", role="operator")
            db.session.add(actor)
            db.session.commit()
        robot, secret = robots.create(actor, institution, f"quota-{secrets.token_hex(3)}")
        user = robots.login_name(robot)
        used = tokens.namespace_use("minisante", fresh=True).used
    docker_cli.login(user, secret)
    ref = docker_cli.tag(tiny_image, f"minisante/quota-{secrets.token_hex(3)}:1")

    set_quota(used // MiB)  # at (or under) what is already stored: full
    result = docker_cli.push(ref, check=False)
    assert result.returncode != 0
    assert "quota" in result.stderr.decode(errors="replace")

    set_quota(used // MiB + 1024)
    docker_cli.push(ref)
    repository = ref.split("/", 1)[1].rsplit(":", 1)[0]
    with registry_app.app_context(), tokens.api_client() as client:
        digest = client.manifest(repository, "1").digest
        client.delete(repository, digest)
        assert client.tags(repository) == []
