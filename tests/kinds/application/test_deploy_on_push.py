"""Deploy on push, end to end: the real registry, Docker Engine and CLI, the front proxy.

A MINISANTE robot pushes `minisante/web:1`; an application following that tag is requested,
approved and provisioned; a changed image pushed to the same tag reaches the portal as the
registry's notification, whose job switches the application to the new digest; a broken image
(its health check fails) leaves it on the previous digest and the page says why; a rollback
brings the first digest back. Every image, tag, manifest and container made is removed.
"""
from __future__ import annotations

import dataclasses
import io
import re
import secrets
import subprocess
import tarfile
import threading
import time

import docker.errors
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from controlplane.core.extensions import db
from controlplane.core.models import (
    Account,
    AuditEvent,
    Deployment,
    Institution,
    Request,
    Service,
)
from controlplane.kinds import registry as kinds
from controlplane.kinds.application import registry_images
from controlplane.registry import robots, tokens
from controlplane.services import jobs as service_jobs
from provisioners.application import container as application
from tests.conftest import run_worker
from tests.registry.conftest import DockerCLI
from tests.requests.test_end_to_end import fetch

pytestmark = pytest.mark.docker
HOST = "web.minisante.gov.bi"
REPOSITORY = "minisante/web"

# One connection at a time, core perl only (the base image has it): / is the baked page,
# /health answers 200 unless the image was built broken.
SERVER_PL = r"""use strict; use warnings; use IO::Socket::INET;
$| = 1; $SIG{PIPE} = "IGNORE"; $SIG{TERM} = sub { exit 0 };
open(my $f, "<", "/opt/app/page.txt") or die "page: $!\n"; my $page = do { local $/; <$f> };
my $healthy = -e "/opt/app/healthy";
my $srv = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => 8080, Listen => 16,
                                ReuseAddr => 1) or die "listen: $!\n";
while (my $c = $srv->accept) {
  eval {
    local $SIG{ALRM} = sub { die "timeout\n" }; alarm 5;
    my $line = <$c> // ""; while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
    my ($path) = $line =~ m{^GET (\S+)}; $path //= "/";
    my ($status, $body) = (200, $page);
    if ($path eq "/health") { ($status, $body) = $healthy ? (200, "ok\n") : (500, "broken\n") }
    print $c "HTTP/1.0 $status X\r\nContent-Type: text/plain\r\nContent-Length: "
      . length($body) . "\r\nConnection: close\r\n\r\n$body";
    alarm 0;
  };
  close $c;
}
"""


def build_image(docker_client, tag: str, page: str, healthy: bool = True) -> str:
    files = {"server.pl": SERVER_PL, "page.txt": page}
    dockerfile = ["FROM comgov/base:bookworm", "COPY server.pl page.txt /opt/app/"]
    if healthy:
        files["healthy"] = ""
        dockerfile.append("COPY healthy /opt/app/healthy")
    dockerfile += ["USER 65534:65534", "EXPOSE 8080", 'CMD ["perl", "/opt/app/server.pl"]']
    files["Dockerfile"] = "\n".join(dockerfile) + "\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _logs = docker_client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return image.id


@pytest.fixture
def deploy_app(docker_app, registry):
    """The portal on the real engine and registry; the registry's address is allowed for
    applications; health probes every second; a redeployment waits 6 s for its health."""
    app = docker_app
    app.config.update(registry["settings"])
    app.config.update(APP_HEALTH_INTERVAL=1, APP_DEPLOY_TIMEOUT=6)
    pol = app.extensions["policies"]
    entry = pol.catalogue["application"]
    entry = dataclasses.replace(entry, registries=entry.registries + (registry["address"] + "/",))
    app.extensions["policies"] = dataclasses.replace(
        pol, catalogue={**pol.catalogue, "application": entry})
    return app


@pytest.fixture
def portal(deploy_app, registry):
    """The portal where the registry sends clients for tokens and posts its events."""
    server = make_server("127.0.0.1", registry["token_port"], deploy_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="portal", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{registry['token_port']}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def images(docker_client):
    """Three builds of the test application (v1, v2, broken), removed with every reference."""
    suffix = secrets.token_hex(3)
    made = {}
    try:
        for variant, page, healthy in (("v1", "version one\n", True),
                                       ("v2", "version two\n", True),
                                       ("broken", "broken version\n", False)):
            tag = f"comgov-test/deploy-web:{variant}-{suffix}"
            made[variant] = (tag, build_image(docker_client, tag, page, healthy))
        yield {variant: tag for variant, (tag, _id) in made.items()}
    finally:
        for _tag, image_id in made.values():
            try:
                docker_client.images.remove(image_id, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


@pytest.fixture
def pusher(tmp_path, deploy_app, registry, portal):
    """The Docker CLI logged in as a MINISANTE robot; the manifests it pushed are deleted
    from the registry at the end, and its tags removed from the engine."""
    with deploy_app.app_context():
        institution = db.session.scalar(select(Institution)
                                        .where(Institution.acronym == "MINISANTE"))
        actor = Account(username="op.robots", dn="uid=op.robots", role="operator")
        db.session.add(actor)
        db.session.commit()
        robot, secret = robots.create(actor, institution, f"ci-{secrets.token_hex(3)}")
        user = robots.login_name(robot)
    cli = DockerCLI(tmp_path / "docker-config", registry["address"])
    cli.login(user, secret)
    cli.robot = user
    cli.digests = []
    yield cli
    cli.cleanup()
    with deploy_app.app_context(), tokens.api_client() as api:
        for digest in cli.digests:
            try:
                api.delete(REPOSITORY, digest)
            except Exception:  # noqa: BLE001 - already deleted
                pass


def push(cli: DockerCLI, local_tag: str) -> str:
    """Push `local_tag` as <registry>/minisante/web:1; returns the manifest's digest."""
    ref = f"{cli.registry}/{REPOSITORY}:1"
    cli.run("tag", local_tag, ref)
    if ref not in cli.tags:
        cli.tags.append(ref)
    out = cli.push(ref).stdout.decode()
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)
    cli.digests.append(digest)
    return digest


def wait_for_deployment(app, service_id: int, digest: str, timeout: float = 20) -> int:
    """The registry's notification reached the portal: a pending deployment for `digest`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            dep = db.session.scalar(select(Deployment).where(
                Deployment.service_id == service_id, Deployment.digest == digest))
            if dep is not None:
                assert dep.status == "pending" and dep.trigger == "push"
                return dep.id
        time.sleep(0.1)
    raise AssertionError(f"no deployment of {digest} after {timeout} s")


def page_text(proxy_port: int, expected: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = fetch(proxy_port, HOST).text
        if text == expected:
            return text
        time.sleep(0.1)
    return text


def deployments_of(app, service_id: int) -> list[tuple[str, str, str, str | None]]:
    with app.app_context():
        return [(d.digest, d.trigger, d.status, d.pushed_by) for d in db.session.scalars(
            select(Deployment).where(Deployment.service_id == service_id)
            .order_by(Deployment.id))]


def app_containers(docker_client, prefix: str, service_id: int) -> list[str]:
    return sorted(c.name for c in docker_client.containers.list(all=True, filters={"label": [
        f"bi.gov.comgov.prefix={prefix}", "bi.gov.comgov.kind=application",
        f"bi.gov.comgov.service={service_id}"]}))


def test_a_push_redeploys_a_broken_one_is_refused_and_a_rollback_works(
        deploy_app, registry, portal, pusher, images, auth, client, docker_client, proxy_port,
        docker_prefix):
    app = deploy_app
    first = push(pusher, images["v1"])

    auth.login("fp.sante")
    image = f"{registry['address']}/{REPOSITORY}:1"
    response = auth.post("/portal/requests/new/application", {
        "name": "web", "hostname": HOST, "image": image, "follow_tag": "y", "port": "8080",
        "health_path": "/health", "environment": "", "database": "", "size": "S",
        "volume_path": ""}, page="/portal/requests/new/application")
    assert response.status_code == 302, response.get_data(as_text=True)[-2000:]
    request_id = int(response.headers["Location"].rsplit("/", 1)[1])
    auth.logout()
    auth.login("op.one")
    auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}")
    run_worker(app)
    with app.app_context():
        sid = db.session.get(Request, request_id).service.id
    try:
        with app.app_context():
            svc = db.session.get(Service, sid)
            assert svc.status == "running", svc.error
            assert svc.params["follow_tag"] is True and svc.params["digest"] == first
        assert page_text(proxy_port, "version one\n") == "version one\n"

        # A changed image pushed to the same tag: the registry tells the portal, a job deploys.
        second = push(pusher, images["v2"])
        wait_for_deployment(app, sid, second)
        assert application.app_container_name(docker_prefix, sid) in app_containers(
            docker_client, docker_prefix, sid)
        run_worker(app)
        assert page_text(proxy_port, "version two\n") == "version two\n"
        with app.app_context():
            svc = db.session.get(Service, sid)
            assert svc.params["digest"] == second
            current = kinds.get("application").container_name(svc)
            assert current == application.app_container_name(docker_prefix, sid,
                                                               svc.params["deployment"])
            assert kinds.get("application").probe(svc)[0]
        assert app_containers(docker_client, docker_prefix, sid) == [current]  # old one gone
        assert deployments_of(app, sid) == [(first, "provision", "deployed", None),
                                            (second, "push", "deployed", pusher.robot)]
        html = client.get(f"/services/{sid}").get_data(as_text=True)
        assert first.split(":")[1][:12] in html and second.split(":")[1][:12] in html
        assert pusher.robot in html

        # A broken image (its health check fails): the application stays on the second digest.
        broken = push(pusher, images["broken"])
        wait_for_deployment(app, sid, broken)
        run_worker(app)
        assert fetch(proxy_port, HOST).text == "version two\n"
        assert app_containers(docker_client, docker_prefix, sid) == [current]
        with app.app_context():
            svc = db.session.get(Service, sid)
            assert svc.params["digest"] == second and svc.status == "running"
            failed = db.session.scalar(select(Deployment).where(Deployment.digest == broken))
            assert failed.status == "failed" and "not healthy" in failed.error
        html = client.get(f"/services/{sid}").get_data(as_text=True)
        failure = re.search(r'<dd id="deploy-failure"[^>]*>(.*?)</dd>', html, re.S).group(1)
        assert broken.split(":")[1][:12] in failure and "not healthy" in failure

        # Roll back to the first digest, still in the registry: offered, then done.
        with app.app_context():
            first_row = db.session.scalar(select(Deployment).where(
                Deployment.service_id == sid, Deployment.trigger == "provision"))
        action = f"/services/{sid}/deployments/{first_row.id}/rollback"
        assert f'action="{action}"' in html
        assert html.count("/rollback\"") == 1  # not the running digest, not the failed one
        answer = auth.post(action, page=f"/services/{sid}")
        assert answer.status_code == 302
        run_worker(app)
        assert page_text(proxy_port, "version one\n") == "version one\n"
        assert deployments_of(app, sid) == [
            (first, "provision", "deployed", None),
            (second, "push", "rolled_back", pusher.robot),
            (broken, "push", "failed", pusher.robot),
            (first, "rollback", "deployed", "op.one")]
        with app.app_context():
            svc = db.session.get(Service, sid)
            assert svc.params["digest"] == first
            assert app_containers(docker_client, docker_prefix, sid) == [
                kinds.get("application").container_name(svc)]
            actions = [e.action for e in db.session.scalars(select(AuditEvent).where(
                AuditEvent.target_type == "service", AuditEvent.target_id == sid,
                AuditEvent.action.like("application.%")).order_by(AuditEvent.id))]
        assert actions == ["application.deployed", "application.deployed",
                           "application.deploy_failed", "application.rollback_requested",
                           "application.rolled_back"]
    finally:
        with app.app_context():
            service_jobs.run_service_action(sid, "delete")
        assert app_containers(docker_client, docker_prefix, sid) == []


def test_the_worker_pulls_with_a_token_for_the_repository_only(deploy_app, registry, portal,
                                                               pusher, docker_client):
    """An institution's image is pulled with a token minted for its repository's pull scope;
    the engine on its own has no right to it."""
    data = f"pull test {secrets.token_hex(8)}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    local = f"comgov-test/deploy-pull:{secrets.token_hex(3)}"
    subprocess.run(["docker", "import", "-", local], input=buf.getvalue(), check=True,
                   capture_output=True, timeout=120)
    image_id = docker_client.images.get(local).id
    try:
        digest = push(pusher, local)
        docker_client.images.remove(image_id, force=True)  # every reference: off the engine
        with deploy_app.app_context():
            image = registry_images.in_registry(f"{registry['address']}/{REPOSITORY}:1")
            assert (image.repository, image.tag) == (REPOSITORY, "1")
            with pytest.raises((docker.errors.APIError, RuntimeError)):
                application.pull_image(docker_client, image.name, digest, None)
            ref = registry_images.pull(docker_client, image, digest)
        assert ref == f"{registry['address']}/{REPOSITORY}@{digest}"
        assert docker_client.images.get(ref).id == image_id
    finally:
        try:
            docker_client.images.remove(image_id, force=True)
        except docker.errors.ImageNotFound:
            pass
