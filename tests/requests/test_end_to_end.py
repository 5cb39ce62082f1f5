"""The whole path on real components: request, approve, RQ worker, Docker, proxy, content."""
from __future__ import annotations

import io
import tarfile
import time

import docker.errors
import pytest
import requests
from sqlalchemy import func, select

from controlplane.core.extensions import db
from controlplane.core.models import ContentUpload, Request, Service
from tests.conftest import run_worker

pytestmark = pytest.mark.docker
HOST = "www.minisante.gov.bi"


def fetch(port: int, host: str = HOST, expect: int = 200, timeout: float = 15.0):
    """GET / through the front proxy, polling until the expected status (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=3)
            if last.status_code == expect:
                return last
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"proxy never answered {expect} for {host}: "
                         f"{last.status_code if last is not None else 'no answer'}")


def site_archive(html: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in [("index.html", html.encode()), ("css/site.css", b"body{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def request_and_approve(auth, hostname=HOST, size="L"):
    auth.login("fp.sante")
    response = auth.post("/portal/requests/new/website", {"hostname": hostname, "size": size},
                         page="/portal/requests/new/website")
    assert response.status_code == 302, response.get_data(as_text=True)
    request_id = int(response.headers["Location"].rsplit("/", 1)[1])
    auth.logout()
    auth.login("op.one")
    response = auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}")
    service_id = int(response.headers["Location"].rsplit("/", 1)[1])
    auth.logout()
    return service_id


def upload(auth, service_id: int, data: bytes, filename="site.tar.gz"):
    return auth.post(f"/services/{service_id}/content",
                     {"archive": (io.BytesIO(data), filename)}, page=f"/services/{service_id}",
                     content_type="multipart/form-data", follow_redirects=True)


def test_whole_path(docker_app, client, auth, proxy_port, docker_client, docker_prefix):
    app = docker_app
    service_id = request_and_approve(auth)
    auth.login("fp.sante")
    status = client.get(f"/services/{service_id}/status.json").get_json()
    assert status["status"] == "provisioning" and status["url"] is None
    run_worker(app)

    status = client.get(f"/services/{service_id}/status.json").get_json()
    assert status["status"] == "running", status
    assert status["url"] == f"http://{HOST}:{proxy_port}/"
    page = client.get(f"/services/{service_id}").get_data(as_text=True)
    assert "en marche" in page and status["url"] in page
    assert "Site en préparation" in fetch(proxy_port).text

    response = upload(auth, service_id, site_archive("<h1>Minisante en ligne</h1>"))
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(ContentUpload)).status == "pending"
    run_worker(app)
    assert "Minisante en ligne" in fetch(proxy_port).text
    with app.app_context():
        assert db.session.scalar(select(ContentUpload)).status == "deployed"
        req = db.session.scalar(select(Request))
        assert req.status == "active"

    container = docker_client.containers.get(f"{docker_prefix}-web-{service_id}")
    host_config = container.attrs["HostConfig"]
    size = app.extensions["policies"].size("website", "L")
    assert host_config["Memory"] == size.memory_bytes
    assert host_config["NanoCpus"] == size.nano_cpus
    assert host_config["PidsLimit"] == size.pids
    assert host_config["CapDrop"] == ["ALL"] and not host_config["CapAdd"]
    assert host_config["ReadonlyRootfs"] is True
    assert any("no-new-privileges" in opt for opt in host_config["SecurityOpt"])
    labels = container.labels
    assert labels["bi.gov.comgov.service"] == str(service_id)
    assert labels["bi.gov.comgov.institution"] == "MINISANTE"
    networks = container.attrs["NetworkSettings"]["Networks"]
    with app.app_context():
        inst_id = db.session.get(Service, service_id).institution_id
    assert list(networks) == [f"{docker_prefix}-net-{inst_id}"]

    # stop, start, delete
    auth.post(f"/services/{service_id}/actions/stop", page=f"/services/{service_id}")
    run_worker(app)
    assert client.get(f"/services/{service_id}/status.json").get_json()["status"] == "stopped"
    fetch(proxy_port, expect=502)
    auth.post(f"/services/{service_id}/actions/start", page=f"/services/{service_id}")
    run_worker(app)
    assert "Minisante en ligne" in fetch(proxy_port).text

    auth.logout()
    auth.login("op.one")  # operators act on every institution
    auth.post(f"/services/{service_id}/actions/delete", page=f"/services/{service_id}")
    run_worker(app)
    assert client.get(f"/services/{service_id}/status.json").get_json()["status"] == "deleted"
    fetch(proxy_port, expect=404)
    with app.app_context():  # the content is kept for the retention period of policies/
        from controlplane.core.models import Backup

        final = db.session.scalar(select(Backup).where(Backup.service_id == service_id,
                                                       Backup.trigger == "final"))
        assert final is not None and final.expires_at is not None
        with tarfile.open(final.path) as archive:
            page = archive.extractfile(next(m for m in archive.getmembers()
                                            if m.name.endswith("index.html"))).read()
        assert b"Minisante en ligne" in page
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(f"{docker_prefix}-web-{service_id}")
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(f"{docker_prefix}-web-{service_id}-data")


def test_provisioning_twice_creates_nothing_twice(docker_app, auth, docker_client, docker_prefix):
    from controlplane.services import jobs

    app = docker_app
    service_id = request_and_approve(auth, "double.minisante.gov.bi")
    run_worker(app)
    flt = {"label": [f"bi.gov.comgov.service={service_id}", "bi.gov.comgov.kind=website",
                     f"bi.gov.comgov.prefix={docker_prefix}"]}
    everything = {"label": [f"bi.gov.comgov.service={service_id}",
                            f"bi.gov.comgov.prefix={docker_prefix}"]}
    first = [c.id for c in docker_client.containers.list(all=True, filters=flt)]
    all_first = sorted(c.id for c in docker_client.containers.list(all=True, filters=everything))
    with app.app_context():
        assert jobs.run_service_action(service_id, "provision") == "running"
        assert jobs.run_service_action(service_id, "provision") == "running"
    assert [c.id for c in docker_client.containers.list(all=True, filters=flt)] == first
    assert len(first) == 1
    assert len(docker_client.volumes.list(filters=flt)) == 1
    # the site's SFTP side-car (and its keys volume) are not duplicated either
    assert sorted(c.id for c in docker_client.containers.list(
        all=True, filters=everything)) == all_first
    assert len(docker_client.volumes.list(filters=everything)) == len(all_first)
    with app.app_context():
        assert db.session.get(Service, service_id).status == "running"
        jobs.run_service_action(service_id, "delete")


def test_failure_shows_error_and_retry_finishes(docker_app, client, auth, proxy_port,
                                                docker_client, docker_prefix):
    app = docker_app
    good_image = app.config["SITE_IMAGE"]
    app.config["SITE_IMAGE"] = "comgov/does-not-exist:never"
    service_id = request_and_approve(auth, "retry.minisante.gov.bi")
    run_worker(app)
    auth.login("op.one")
    page = client.get(f"/services/{service_id}").get_data(as_text=True)
    assert "en échec" in page and "does-not-exist" in page and "Réessayer" in page
    assert "retry.minisante.gov.bi" in client.get("/ops/").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Service, service_id).request.status == "failed"

    app.config["SITE_IMAGE"] = good_image
    auth.post(f"/services/{service_id}/actions/retry", page=f"/services/{service_id}")
    run_worker(app)
    with app.app_context():
        svc = db.session.get(Service, service_id)
        assert svc.status == "running" and svc.error is None
        assert svc.request.status == "active"
    assert "Site en préparation" in fetch(proxy_port, "retry.minisante.gov.bi").text

    auth.post(f"/services/{service_id}/actions/delete", page=f"/services/{service_id}")
    run_worker(app)
    flt = {"label": [f"bi.gov.comgov.service={service_id}",
                     f"bi.gov.comgov.prefix={docker_prefix}"]}
    assert docker_client.containers.list(all=True, filters=flt) == []
    assert docker_client.volumes.list(filters=flt) == []


def test_failed_provisioning_can_be_deleted_cleanly(docker_app, client, auth, docker_client,
                                                   docker_prefix):
    app = docker_app
    app.config["SITE_IMAGE"] = "comgov/does-not-exist:never"
    service_id = request_and_approve(auth, "gone.minisante.gov.bi")
    run_worker(app)
    auth.login("fp.sante")
    auth.post(f"/services/{service_id}/actions/delete", page=f"/services/{service_id}")
    run_worker(app)
    flt = {"label": [f"bi.gov.comgov.service={service_id}",
                     f"bi.gov.comgov.prefix={docker_prefix}"]}
    assert docker_client.containers.list(all=True, filters=flt) == []
    assert docker_client.volumes.list(filters=flt) == []
    with app.app_context():
        assert db.session.get(Service, service_id).status == "deleted"


@pytest.mark.parametrize("data, filename, message", [
    (b"not an archive at all", "site.tar.gz", "n’est pas une archive"),
    (None, "site.tar.gz", "chemin absolu"),
])
def test_bad_archive_is_refused_and_nothing_created(docker_app, client, auth, data, filename,
                                                     message):
    app = docker_app
    service_id = request_and_approve(auth, "upload.minisante.gov.bi")
    run_worker(app)
    auth.login("fp.sante")
    if data is None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("/etc/cron.d/evil")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        data = buf.getvalue()
    page = upload(auth, service_id, data, filename).get_data(as_text=True)
    assert message in page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ContentUpload)) == 0
        from controlplane.services import jobs

        jobs.run_service_action(service_id, "delete")


def test_archive_too_large_for_the_request(docker_app, client, auth):
    app = docker_app
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    service_id = request_and_approve(auth, "big.minisante.gov.bi")
    auth.login("fp.sante")
    response = auth.post(f"/services/{service_id}/content",
                         {"archive": (io.BytesIO(b"\0" * (2 * 1024 * 1024)), "big.tar")},
                         page=f"/services/{service_id}", content_type="multipart/form-data")
    assert response.status_code == 413
    assert "trop volumineux" in response.get_data(as_text=True)
