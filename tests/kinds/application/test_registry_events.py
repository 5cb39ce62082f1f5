"""The registry's notification endpoint and the rollback route, without Docker: the shared
secret, which events start a deployment (and which job), who may roll back to what."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest
import yaml
from redis import Redis
from rq.job import Job
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Deployment, Institution, Service
from controlplane.kinds.application import jobs
from provisioners.registry import configuration

SECRET = "s3cret-notification-token-0123"
ADDRESS = "127.0.0.1:5001"  # the default REGISTRY_ADDRESS
IMAGE = f"{ADDRESS}/minisante/web:1"
RUNNING = "sha256:" + "a" * 64
PUSHED = "sha256:" + "b" * 64
V2 = "application/vnd.docker.distribution.manifest.v2+json"


def event(action="push", repository="minisante/web", tag="1", digest=PUSHED, media=V2,
          actor="robot$minisante+ci"):
    target = {"mediaType": media, "repository": repository, "digest": digest, "size": 10}
    if tag is not None:
        target["tag"] = tag
    return {"id": "e1", "action": action, "target": target, "actor": {"name": actor}}


def post_events(client, events, secret=SECRET, **kwargs):
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    return client.post("/registry/events", data=json.dumps({"events": events}),
                       headers=headers, content_type="application/vnd.docker.distribution"
                       ".events.v1+json", **kwargs)


@pytest.fixture
def events_app(app):
    app.config.update(REGISTRY_NOTIFICATION_SECRET=SECRET, REGISTRY_ADDRESS=ADDRESS,
                      REGISTRY_URL="http://127.0.0.1:1")  # no registry behind it
    return app


def make_app_service(app, name="web", image=IMAGE, follow=True, status="running",
                     acronym="MINISANTE") -> int:
    with app.app_context():
        institution = db.session.scalar(select(Institution).where(Institution.acronym == acronym))
        svc = Service(institution_id=institution.id, kind="application", name=name,
                      hostname=f"{name}.{institution.domain}", size="S", status=status,
                      params={"image": image, "port": 8080, "health_path": "/",
                              "follow_tag": follow, "digest": RUNNING if follow else None,
                              "deployed_image": f"{ADDRESS}/minisante/web@{RUNNING}"
                              if follow else None, "deployment": None})
        db.session.add(svc)
        db.session.flush()
        db.session.add(Deployment(service_id=svc.id, institution_id=institution.id,
                                  repository="minisante/web", digest=RUNNING, tag="1",
                                  trigger="provision", status="deployed"))
        db.session.commit()
        return svc.id


def deployments(app, service_id=None):
    with app.app_context():
        query = select(Deployment).where(Deployment.trigger != "provision")
        if service_id is not None:
            query = query.where(Deployment.service_id == service_id)
        return [(d.service_id, d.digest, d.tag, d.trigger, d.status, d.pushed_by)
                for d in db.session.scalars(query.order_by(Deployment.id))]


def test_the_endpoint_is_closed_without_a_secret(app, client):
    assert post_events(client, [event()]).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Bearer {SECRET}x"},
                                     {"Authorization": f"Basic {SECRET}"},
                                     {"Authorization": SECRET}])
def test_a_wrong_secret_is_refused(events_app, client, headers):
    sid = make_app_service(events_app)
    response = client.post("/registry/events", data=json.dumps({"events": [event()]}),
                           headers=headers, content_type="application/json")
    assert response.status_code == 401
    assert deployments(events_app, sid) == []


def test_only_a_push_of_the_followed_tag_starts_a_deployment(events_app, client):
    sid = make_app_service(events_app)
    other = make_app_service(events_app, name="other", follow=False)
    stopped = make_app_service(events_app, name="off", status="stopped")
    ignored = [event(action="pull"), event(media="application/octet-stream"),
               event(tag=None), event(repository="minisante/other"), event(tag="2"),
               event(repository="obr/web"), event(digest="sha256:short"),
               event(repository="Minisante/Web"), "not an event", {"action": "push"}]
    response = post_events(events_app.test_client(), ignored)
    assert response.status_code == 200 and response.get_json()["deployments"] == []
    assert deployments(events_app) == []

    response = post_events(client, [event()])
    assert response.status_code == 200
    assert deployments(events_app) == [(sid, PUSHED, "1", "push", "pending",
                                        "robot$minisante+ci")]
    assert deployments(events_app, other) == deployments(events_app, stopped) == []
    dep_id = response.get_json()["deployments"][0]
    job = Job.fetch(f"service-{sid}-deploy-{'b' * 64}",
                    connection=Redis.from_url(events_app.config["REDIS_URL"]))
    assert job.func_name == "controlplane.kinds.application.jobs.deploy"
    assert job.args == (sid, dep_id)

    # The registry delivers again (a timeout on its side): nothing new.
    assert post_events(client, [event()]).get_json()["deployments"] == [dep_id]
    assert len(deployments(events_app)) == 1
    # The digest running already: nothing to do.
    assert post_events(client, [event(digest=RUNNING)]).get_json()["deployments"] == []


def test_a_body_too_large_or_not_json(events_app, client):
    events_app.config["REGISTRY_EVENTS_MAX_BYTES"] = 100
    assert post_events(client, [event()] * 5).status_code == 413
    response = client.post("/registry/events", data=b"{not json",
                           headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 400


def test_the_job_id_names_the_service_and_the_digest():
    dep = Deployment(service_id=7, digest=PUSHED, trigger="push")
    assert jobs.job_id(dep) == f"service-7-deploy-{'b' * 64}"
    dep.trigger = "rollback"
    assert jobs.job_id(dep) == f"service-7-rollback-{'b' * 64}"


def test_following_needs_a_tag_of_the_registry(app, client, auth):
    auth.login("fp.sante")
    response = auth.post("/portal/requests/new/application", {
        "name": "web", "hostname": "web.minisante.gov.bi", "follow_tag": "y",
        "image": "registry.dc.gov.bi/minisante/web:1", "port": "8080", "health_path": "/",
        "environment": "", "database": "", "size": "S", "volume_path": ""},
        page="/portal/requests/new/application")
    assert response.status_code == 422
    assert f"({app.config['REGISTRY_ADDRESS']}/…)" in response.get_data(as_text=True)


def test_who_may_roll_back_and_to_what(events_app, client, auth):
    sid = make_app_service(events_app)
    with events_app.app_context():
        first = db.session.scalar(select(Deployment).where(Deployment.service_id == sid)).id
        failed = Deployment(service_id=sid, institution_id=db.session.get(Service, sid)
                            .institution_id, repository="minisante/web", digest=PUSHED,
                            tag="1", trigger="push", status="failed", error="not healthy")
        db.session.add(failed)
        db.session.commit()
        failed = failed.id
    page = f"/services/{sid}"

    auth.login("au.one")
    html = client.get(page).get_data(as_text=True)
    assert 'id="deployments"' in html and "/rollback" not in html
    assert re.search(r'id="deploy-failure"[^>]*>.*not healthy', html, re.S)
    assert auth.post(f"{page}/deployments/{first}/rollback", page=page).status_code == 403
    auth.logout()

    auth.login("fp.obr")
    assert auth.post(f"{page}/deployments/{first}/rollback", page="/").status_code == 404
    auth.logout()

    auth.login("fp.sante")
    # the running digest, a failed one: never offered, refused if asked
    for target in (first, failed):
        response = auth.post(f"{page}/deployments/{target}/rollback", page=page,
                             follow_redirects=True)
        assert response.status_code == 200
    # without CSRF token: nothing
    assert client.post(f"{page}/deployments/{first}/rollback").status_code == 400
    assert deployments(events_app, sid) == [(sid, PUSHED, "1", "push", "failed", None)]


def _registry_spec(tmp_path, **endpoint):
    values = dict(url="http://127.0.0.1:5000/registry/events", secret=SECRET)
    values.update(endpoint)
    return configuration.RegistrySpec(
        storage_dir=tmp_path / "data", addr="127.0.0.1:5001",
        realm="http://127.0.0.1:5000/v2/token", service="s", issuer="i",
        rootcertbundle=tmp_path / "token.crt", http_secret="h",
        notifications=(configuration.NotificationEndpoint(**values),))


def test_the_registry_sends_manifest_pushes_with_the_secret(tmp_path):
    config = yaml.safe_load(configuration.render(_registry_spec(tmp_path, backoff="1s")))
    (endpoint,) = config["notifications"]["endpoints"]
    assert endpoint["url"] == "http://127.0.0.1:5000/registry/events"
    assert endpoint["headers"] == {"Authorization": [f"Bearer {SECRET}"]}
    assert (endpoint["timeout"], endpoint["threshold"], endpoint["backoff"]) == ("5s", 5, "1s")
    assert endpoint["ignore"]["actions"] == ["pull"]
    assert "application/octet-stream" in endpoint["ignore"]["mediatypes"]
    without = configuration.render(dataclasses.replace(_registry_spec(tmp_path),
                                                       notifications=()))
    assert "notifications" not in yaml.safe_load(without)


@pytest.mark.parametrize("endpoint", [{"url": "ftp://x/events"}, {"secret": "short"},
                                      {"secret": SECRET + " x"}, {"timeout": "5"},
                                      {"backoff": "1h"}, {"threshold": 0}])
def test_a_bad_notification_endpoint_is_refused(tmp_path, endpoint):
    with pytest.raises(ValueError):
        configuration.render(_registry_spec(tmp_path, **endpoint))
