"""Session fixtures: real Redis, slapd and Docker Engine, started once and cleaned up."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from devtools import devstack

TEST_LABEL = "bi.gov.comgov.test"


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def docker_client():
    import docker

    devstack.ensure_dockerd(Path("/tmp/controlplane-dockerd.log"))
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_prefix(docker_client):
    """A per-session name prefix; every object under it is removed at teardown."""
    prefix = "cpt" + secrets.token_hex(3)
    yield prefix
    _remove_docker_objects(docker_client, prefix)


def _remove_docker_objects(client, prefix: str) -> None:
    import docker.errors

    flt = {"label": [f"bi.gov.comgov.prefix={prefix}"]}
    for container in client.containers.list(all=True, filters=flt):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
    for volume in client.volumes.list(filters=flt):
        try:
            volume.remove(force=True)
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(filters=flt):
        try:
            network.remove()
        except docker.errors.NotFound:
            pass
    # Quota volumes are loop-mounted filesystems under each test's instance folder.
    import subprocess

    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        mounts = [line.split()[4] for line in fh]
    for point in mounts:
        if f"/{prefix}-" in point and point.endswith(".mnt"):
            subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture(scope="session")
def redis_url(session_dir):
    port = devstack.free_port()
    proc = devstack.start_redis(session_dir / "redis", port)
    yield f"redis://127.0.0.1:{port}/0"
    devstack.stop_process(proc)


@pytest.fixture(scope="session")
def ldap_config(session_dir):
    from provisioners.directory import tree as directory

    port = devstack.free_port()
    password = secrets.token_urlsafe(16)
    cfg = directory.DirectoryConfig(
        url=f"ldap://127.0.0.1:{port}",
        base_dn="dc=gov,dc=bi",
        admin_dn="cn=admin,dc=gov,dc=bi",
        admin_password=password,
    )
    proc = devstack.start_slapd(
        session_dir / "slapd", port,
        base_dn=cfg.base_dn, admin_dn=cfg.admin_dn, admin_password=password,
    )
    directory.ensure_tree(cfg)
    yield cfg
    devstack.stop_process(proc)


@pytest.fixture(scope="session")
def proxy_port():
    return devstack.free_port()


# --------------------------------------------------------------------------- application

PASSWORD = "Test-pass-2026!"
PEOPLE = {
    # uid: (role, institution)
    "fp.sante": ("focal_point", "MINISANTE"),
    "fp.sante2": ("focal_point", "MINISANTE"),
    "fp.obr": ("focal_point", "OBR"),
    "op.one": ("operator", None),
    "au.one": ("auditor", None),
}
INSTITUTIONS = [
    ("MINISANTE", "Ministère de la Santé Publique", "minisante.gov.bi", "ministry"),
    ("OBR", "Office Burundais des Recettes", "obr.gov.bi", "agency"),
]


@pytest.fixture(scope="session")
def directory_people(ldap_config):
    """The test institutions and people, in the real directory, once per session."""
    from provisioners.directory import tree as directory

    for acronym, name, _domain, _cat in INSTITUTIONS:
        directory.ensure_institution(ldap_config, acronym, name)
    for uid, (role, inst) in PEOPLE.items():
        directory.ensure_person(ldap_config, uid=uid, full_name=uid.replace(".", " ").title(),
                                mail=f"{uid}@example.gov.bi", password=PASSWORD, role=role,
                                institution=inst)
    return PEOPLE


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """A database migrated once with Alembic; each test gets a copy."""
    from flask_migrate import upgrade

    from controlplane.app import create_app

    path = tmp_path_factory.mktemp("db") / "template.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "t",
                      "TESTING": True})
    with app.app_context():
        upgrade()
        from controlplane.core.extensions import db

        db.engine.dispose()
    return path


@pytest.fixture
def app_config(tmp_path, template_db, redis_url, ldap_config, directory_people):
    import shutil

    db_path = tmp_path / "controlplane.db"
    shutil.copy(template_db, db_path)
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
        "REDIS_URL": redis_url,
        "RQ_QUEUE": "test",
        "LDAP_URL": ldap_config.url,
        "LDAP_BASE_DN": ldap_config.base_dn,
        "LDAP_ADMIN_DN": ldap_config.admin_dn,
        "LDAP_ADMIN_PASSWORD": ldap_config.admin_password,
        "RATELIMIT_LOGIN": "1000 per minute",
        "RATELIMIT_STORAGE_URI": "memory://",
    }


@pytest.fixture
def app(app_config, tmp_path, monkeypatch):
    from redis import Redis

    from controlplane.app import create_app
    from controlplane.core.extensions import db
    from controlplane.core.infra import directory_config
    from devtools import demo

    monkeypatch.setenv("CONTROLPLANE_INSTANCE", str(tmp_path / "instance"))
    app = create_app(app_config)
    Redis.from_url(app.config["REDIS_URL"]).flushdb()
    with app.app_context():
        for acronym, name, domain, category in INSTITUTIONS:
            demo.ensure_institution(directory_config(), acronym, name, domain, category)
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def docker_app(app, docker_client, docker_prefix, proxy_port):
    """The app wired to the real Docker Engine under the session's prefix."""
    app.config.update(DOCKER_PREFIX=docker_prefix, PROXY_PORT=proxy_port,
                      DOCKER_EXTRA_LABELS={TEST_LABEL: "1"})
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_token(client, path: str = "/login") -> str:
    import re

    html = client.get(path, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, username: str, password: str = PASSWORD):
        token = csrf_token(self.client, "/login")
        return self.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": token})

    def logout(self):
        token = csrf_token(self.client, "/")
        return self.client.post("/logout", data={"csrf_token": token})

    def post(self, path: str, data: dict | None = None, page: str = "/", **kwargs):
        """POST with a CSRF token taken from `page`, as a browser would."""
        data = dict(data or {})
        data["csrf_token"] = csrf_token(self.client, page)
        return self.client.post(path, data=data, **kwargs)


@pytest.fixture
def auth(client):
    return AuthActions(client)


def run_worker(app) -> None:
    """Run queued jobs in-process with a real RQ worker on the real Redis."""
    from redis import Redis
    from rq import Queue, SimpleWorker

    conn = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        SimpleWorker([Queue(app.config["RQ_QUEUE"], connection=conn)],
                     connection=conn).work(burst=True)


@pytest.fixture(scope="session")
def mail_settings(docker_client, session_dir, ldap_config, tmp_path_factory):
    """Configuration of a mail platform for the session (image built once, free ports)."""
    from provisioners.images import build as images

    images.ensure_base_image(docker_client, tmp_path_factory.mktemp("base"))
    images.ensure_image(docker_client, "mail")
    return {
        "MAIL_SERVICE_PASSWORD": secrets.token_urlsafe(24),
        "LDAP_LDAPI_DIR": str(devstack.default_ldapi_path(session_dir / "slapd").parent),
        "MAIL_SMTP_PORT": devstack.free_port(),
        "MAIL_IMAP_PORT": devstack.free_port(),
        "MAIL_SUBMISSION_PORT": devstack.free_port(),
    }


def pytest_collection_modifyitems(items):
    """Run test files in the order of their file names, whatever folder holds them.

    Docker-backed tests share the session's name prefix, and service ids restart at 1 in each
    test's fresh database, so a test can meet containers an earlier test left for the
    session's teardown. The suite was written (and passes) in this order; the folders mirror
    the code's layout without changing it. Sorting is stable: order within a file is kept.
    """
    items.sort(key=lambda item: item.path.name)


# --------------------------------------------------------------------------- image registry

@pytest.fixture(scope="session")
def registry(session_dir):
    """Docker's registry (distribution 2.8) with token auth on a free loopback port.

    Its realm is `http://127.0.0.1:<token_port>/v2/token`: tests that need tokens serve the
    portal there (tests/registry/conftest.py). Its push events go to the same portal's
    `/registry/events` with the session's notification secret. `settings` is what the app
    needs to sign tokens the registry trusts, to reach it and to accept its events.
    """
    port = devstack.free_port()
    token_port = devstack.free_port()
    workdir = session_dir / "registry"
    realm = f"http://127.0.0.1:{token_port}/v2/token"
    events_url = f"http://127.0.0.1:{token_port}/registry/events"
    notify_secret = secrets.token_urlsafe(24)
    service, issuer = "comgov-registry-test", "comgov-controlplane-test"
    proc = devstack.start_registry(workdir, port, realm=realm, service=service, issuer=issuer,
                                   notify_url=events_url, notify_secret=notify_secret,
                                   notify_backoff="1s")
    address = f"127.0.0.1:{port}"
    yield {
        "address": address, "url": f"http://{address}", "port": port, "root": workdir,
        "auth_dir": devstack.registry_auth_dir(workdir), "token_port": token_port,
        "realm": realm, "service": service, "issuer": issuer, "events_url": events_url,
        "settings": {"REGISTRY_ADDRESS": address, "REGISTRY_ROOT": str(workdir),
                     "REGISTRY_TOKEN_REALM": realm, "REGISTRY_SERVICE": service,
                     "REGISTRY_ISSUER": issuer,
                     "REGISTRY_PLATFORM_PASSWORD": secrets.token_urlsafe(24),
                     "REGISTRY_NOTIFICATION_SECRET": notify_secret},
    }
    devstack.stop_process(proc)
