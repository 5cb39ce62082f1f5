"""Session fixtures: real Redis, slapd and Docker Engine, started once and cleaned up."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from controlplane import devstack

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


@pytest.fixture(scope="session")
def redis_url(session_dir):
    port = devstack.free_port()
    proc = devstack.start_redis(session_dir / "redis", port)
    yield f"redis://127.0.0.1:{port}/0"
    devstack.stop_process(proc)


@pytest.fixture(scope="session")
def ldap_config(session_dir):
    from provisioners import directory

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
