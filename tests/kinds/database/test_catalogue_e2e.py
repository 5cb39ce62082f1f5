"""Databases and applications through the portal, used with ordinary clients (psql, HTTP)."""
from __future__ import annotations

import os
import re
import subprocess
import textwrap
import time

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import AuditEvent, Backup, Service
from tests.conftest import run_worker
from tests.requests.test_end_to_end import fetch

pytestmark = pytest.mark.docker
APP_IMAGE = "registry.dc.gov.bi/minisante/registre:1.0"


def request_service(auth, kind: str, data: dict) -> int:
    auth.login("fp.sante")
    response = auth.post(f"/portal/requests/new/{kind}", data, page=f"/portal/requests/new/{kind}")
    assert response.status_code == 302, response.get_data(as_text=True)[-2000:]
    request_id = int(response.headers["Location"].rsplit("/", 1)[1])
    return request_id


def service_of(app, request_id: int) -> Service:
    from controlplane.core.models import Request

    with app.app_context():
        return db.session.get(Request, request_id).service.id


def reveal(auth, client, service_id: int) -> dict:
    page = auth.post(f"/services/{service_id}/credentials", page=f"/services/{service_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html[-1500:]
    fields = dict(re.findall(r'<code id="([a-z]+)">([^<]*)</code>', html))
    return {"host": fields["host"], "port": fields["port"], "db": fields["database"],
            "user": fields["user"], "password": fields["password"]}


def psql(creds: dict, sql: str, password: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGPASSWORD=password or creds["password"], PGCONNECT_TIMEOUT="5")
    return subprocess.run(["psql", "-h", creds["host"], "-p", creds["port"], "-U", creds["user"],
                           "-d", creds["db"], "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                          env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def postgres_service(docker_app, client, auth):
    request_id = request_service(auth, "postgresql", {"name": "registre", "size": "S"})
    run_worker(docker_app)
    service_id = service_of(docker_app, request_id)
    with docker_app.app_context():
        svc = db.session.get(Service, service_id)
        assert svc.status == "running", svc.error
    yield service_id
    from controlplane.services import jobs

    with docker_app.app_context():
        jobs.run_service_action(service_id, "delete")


def test_database_used_with_psql_backup_restore_rotate(docker_app, client, auth,
                                                        postgres_service):
    sid = postgres_service
    creds = reveal(auth, client, sid)
    with docker_app.app_context():
        assert db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "service.credentials_revealed", AuditEvent.target_id == sid))
    assert psql(creds, "CREATE TABLE patients (id int); INSERT INTO patients VALUES (7);"
                ).returncode == 0
    auth.post(f"/services/{sid}/backups", page=f"/services/{sid}")
    run_worker(docker_app)
    with docker_app.app_context():
        backup = db.session.scalar(select(Backup).where(Backup.service_id == sid))
        assert backup is not None and backup.trigger == "manual" and backup.size_bytes > 0
        backup_id = backup.id
    assert psql(creds, "DROP TABLE patients;").returncode == 0
    auth.post(f"/services/{sid}/backups/{backup_id}/restore", page=f"/services/{sid}")
    run_worker(docker_app)
    assert psql(creds, "SELECT id FROM patients;").stdout.strip() == "7"

    auth.post(f"/services/{sid}/rotate", page=f"/services/{sid}")
    run_worker(docker_app)
    new = reveal(auth, client, sid)
    assert new["password"] != creds["password"]
    assert psql(creds, "SELECT 1;").returncode != 0  # the old password fails
    assert psql(new, "SELECT 1;").stdout.strip() == "1"
    page = client.get(f"/services/{sid}").get_data(as_text=True)
    assert creds["password"] not in page and new["password"] not in page


def test_deleting_a_database_keeps_a_final_backup(docker_app, client, auth, docker_client):
    request_id = request_service(auth, "postgresql", {"name": "archives", "size": "S"})
    run_worker(docker_app)
    sid = service_of(docker_app, request_id)
    auth.post(f"/services/{sid}/actions/delete", page=f"/services/{sid}")
    run_worker(docker_app)
    with docker_app.app_context():
        svc = db.session.get(Service, sid)
        assert svc.status == "deleted"
        final = db.session.scalar(select(Backup).where(Backup.service_id == sid,
                                                       Backup.trigger == "final"))
        assert final is not None and os.path.exists(final.path)
        assert final.expires_at is not None
    prefix = docker_app.config["DOCKER_PREFIX"]
    assert not docker_client.containers.list(all=True, filters={"name": f"{prefix}-db-{sid}"})
    # deleting what is already gone succeeds
    from controlplane.services import jobs

    with docker_app.app_context():
        assert jobs.run_service_action(sid, "delete") == "gone"


@pytest.fixture(scope="session")
def app_image(docker_client):
    """A tiny Python app: writes a row through DATABASE_URL, answers with what it read."""
    import tempfile

    source = textwrap.dedent('''
        import os, http.server, psycopg2
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/health":
                    body = b"ok"
                else:
                    conn = psycopg2.connect(os.environ["DATABASE_URL"])
                    with conn, conn.cursor() as cur:
                        cur.execute("CREATE TABLE IF NOT EXISTS visits (note text)")
                        cur.execute("INSERT INTO visits VALUES (%s)", (os.environ["GREETING"],))
                        cur.execute("SELECT note, count(*) FROM visits GROUP BY note")
                        note, n = cur.fetchone()
                    body = f"{note} x{n}".encode()
                self.send_response(200); self.end_headers(); self.wfile.write(body)
        http.server.HTTPServer(("0.0.0.0", 8080), H).serve_forever()
    ''')
    dockerfile = textwrap.dedent('''
        FROM comgov/base:bookworm
        RUN apt-get update && apt-get install -y --no-install-recommends python3-psycopg2 \\
            && rm -rf /var/lib/apt/lists/*
        COPY app.py /app.py
        USER 65534:65534
        CMD ["python3", "/app.py"]
    ''')
    with tempfile.TemporaryDirectory() as ctx:
        open(f"{ctx}/app.py", "w").write(source)
        open(f"{ctx}/Dockerfile", "w").write(dockerfile)
        docker_client.images.build(path=ctx, tag=APP_IMAGE, rm=True)
    return APP_IMAGE


def test_application_bound_to_database(docker_app, client, auth, postgres_service, app_image,
                                       proxy_port):
    docker_app.config["APP_HEALTH_INTERVAL"] = 1
    request_id = request_service(auth, "application", {
        "name": "registre", "hostname": "registre.minisante.gov.bi", "image": app_image,
        "port": "8080", "health_path": "/health", "environment": "GREETING=Muraho\n",
        "database": str(postgres_service), "size": "S", "volume_path": ""})
    auth.logout()
    auth.login("op.one")  # applications are reviewed by an operator
    auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}")
    run_worker(docker_app)
    sid = service_of(docker_app, request_id)
    with docker_app.app_context():
        svc = db.session.get(Service, sid)
        assert svc.status == "running", svc.error
    assert fetch(proxy_port, "registre.minisante.gov.bi").text == "Muraho x1"
    assert fetch(proxy_port, "registre.minisante.gov.bi").text == "Muraho x2"
    # rotation re-provisions the bound application with the new password
    auth.post(f"/services/{postgres_service}/rotate", page=f"/services/{postgres_service}")
    run_worker(docker_app)
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        text = fetch(proxy_port, "registre.minisante.gov.bi").text
        if text.startswith("Muraho"):
            break
    assert text.startswith("Muraho x")
    from controlplane.services import jobs

    with docker_app.app_context():
        jobs.run_service_action(sid, "delete")


@pytest.mark.parametrize("data, message", [
    ({"name": "Bad Name!"}, "nom d’application"),
    ({"image": "docker.io/library/nginx:latest"}, "n’est pas autorisée"),
    ({"image": "registry.dc.gov.bi/obr/app:1.0"}, "n’est pas autorisée"),
    ({"port": "70000"}, "port"),
    ({"environment": "1BAD=x"}, "Environnement"),
    ({"environment": "no equals sign"}, "NOM=valeur"),
    ({"volume_path": "../etc"}, "point de montage"),
    ({"hostname": "app.obr.gov.bi"}, "domaine de votre institution"),
])
def test_bad_application_requests_create_nothing(app, client, auth, data, message):
    good = {"name": "registre", "hostname": "registre.minisante.gov.bi",
            "image": "registry.dc.gov.bi/minisante/registre:1.0", "port": "8080",
            "health_path": "/", "environment": "", "database": "", "size": "S",
            "volume_path": ""}
    good.update(data)
    auth.login("fp.sante")
    response = auth.post("/portal/requests/new/application", good,
                         page="/portal/requests/new/application")
    assert response.status_code == 422
    assert message.lower() in response.get_data(as_text=True).lower()
    from controlplane.core.models import Request

    with app.app_context():
        assert db.session.scalar(select(Request)) is None


@pytest.mark.parametrize("name", ["1registre", "postgres", "ab", "x" * 40, "drop;table"])
def test_bad_database_names(app, client, auth, name):
    auth.login("fp.sante")
    response = auth.post("/portal/requests/new/postgresql", {"name": name, "size": "S"},
                         page="/portal/requests/new/postgresql")
    assert response.status_code == 422
