"""A website's SFTP access through the portal: reveal the account's password, upload, serve."""
from __future__ import annotations

import io
import re
import socket

import docker.errors
import ldap3
import paramiko
import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import AuditEvent, Service
from provisioners.directory import service_accounts
from provisioners.images import build as images
from provisioners.website import sftp
from tests.conftest import run_worker
from tests.requests.test_end_to_end import fetch, request_and_approve

pytestmark = pytest.mark.docker
HOST = "fichiers.minisante.gov.bi"


@pytest.fixture(scope="module")
def sftp_image(docker_client, tmp_path_factory) -> str:
    images.ensure_base_image(docker_client, tmp_path_factory.mktemp("base"))
    try:
        docker_client.images.get(images.image_tag("nginx"))
    except docker.errors.ImageNotFound:
        images.ensure_image(docker_client, "nginx")
    return images.ensure_image(docker_client, "sftp")


def reveal(auth, service_id: int):
    return auth.post(f"/services/{service_id}/sftp-credentials", page=f"/services/{service_id}")


def test_site_content_over_sftp_with_the_service_account(docker_app, client, auth, proxy_port,
                                                         docker_client, docker_prefix,
                                                         ldap_config, sftp_image):
    app = docker_app
    sid = request_and_approve(auth, HOST)
    run_worker(app)
    with app.app_context():
        svc = db.session.get(Service, sid)
        assert svc.status == "running", svc.error
        port = svc.params["sftp_port"]
        low, high = app.config["SFTP_PORT_RANGE"]
        assert low <= port <= high
    address = f"sftp://svc-{sid}@127.0.0.1:{port}/site/"

    auth.login("fp.sante")
    assert address in client.get(f"/services/{sid}").get_data(as_text=True)
    response = reveal(auth, sid)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[-1500:]
    assert response.headers["Cache-Control"] == "no-store"
    fields = dict(re.findall(r'<code id="([a-z]+)">([^<]*)</code>', html))
    assert fields["url"] == address and fields["user"] == f"svc-{sid}"
    password = fields["password"]
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "service.credentials_revealed", AuditEvent.target_id == sid))
        assert event is not None and event.actor == "fp.sante"
        assert event.after == {"credential": "sftp"}
    assert password not in client.get(f"/services/{sid}").get_data(as_text=True)

    # The same password opens the site's directory account: it is the service account's.
    dn = service_accounts.service_account_dn(ldap_config, "MINISANTE", sid)
    conn = ldap3.Connection(ldap3.Server(ldap_config.url), user=dn, password=password)
    assert conn.bind()
    conn.unbind()

    sftp.wait_ready("127.0.0.1", int(fields["port"]))
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", int(fields["port"])),
                                                            timeout=10))
    try:
        transport.connect(username=fields["user"], password=password)
        session = paramiko.SFTPClient.from_transport(transport)
        session.chdir("/site")
        session.putfo(io.BytesIO(b"<h1>Fichiers du ministere</h1>"), "index.html")
    finally:
        transport.close()
    assert "Fichiers du ministere" in fetch(proxy_port, HOST).text

    # SFTP stops and starts with the site.
    auth.post(f"/services/{sid}/actions/stop", page=f"/services/{sid}")
    run_worker(app)
    assert docker_client.containers.get(f"{docker_prefix}-sftp-{sid}").status == "exited"
    auth.post(f"/services/{sid}/actions/start", page=f"/services/{sid}")
    run_worker(app)
    sftp.wait_ready("127.0.0.1", int(fields["port"]))
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", int(fields["port"])),
                                                            timeout=10))
    try:
        transport.connect(username=fields["user"], password=password)
        listing = paramiko.SFTPClient.from_transport(transport).listdir("/site")
        assert "index.html" in listing
    finally:
        transport.close()

    auth.logout()
    auth.login("fp.obr")  # another institution: the site does not exist for them
    assert reveal(auth, sid).status_code == 404
    auth.logout()
    auth.login("op.one")  # operators run the platform; they do not read tenants' passwords
    assert reveal(auth, sid).status_code == 403
    auth.post(f"/services/{sid}/actions/delete", page=f"/services/{sid}")
    run_worker(app)
    with app.app_context():
        assert db.session.get(Service, sid).status == "deleted"
    for name in (f"{docker_prefix}-sftp-{sid}", f"{docker_prefix}-web-{sid}"):
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(name)
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(f"{docker_prefix}-sftp-{sid}-keys")
