"""Tenant databases on a real Docker Engine, checked with the real psql and mysql clients."""
from __future__ import annotations

import gzip
import os
import re
import secrets
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import docker.errors
import pytest

from devtools import devstack
from provisioners.database import backup as database_backup
from provisioners.database import server as database
from provisioners.database.engines import DatabaseError
from provisioners.database.server import DatabaseSpec
from provisioners.docker import runtime, volumes
from provisioners.docker.runtime import Limits
from provisioners.images import build as images

pytestmark = pytest.mark.docker

TEST_LABELS = {"bi.gov.comgov.test": "1"}
MiB = 1024 * 1024
LIMITS = Limits(memory_bytes=384 * MiB, nano_cpus=1_000_000_000, pids=128)
DISK = 256 * MiB
IMAGES = {"postgresql": "postgres", "mariadb": "mariadb"}
SERVICE_IDS = {"postgresql": 71, "mariadb": 72}
# Quotes, backslash, dollar and spaces: proves nothing is interpolated into a shell or SQL.
PASSWORD_TAIL = "'\"\\ $x;--"


def client_cmd(spec: DatabaseSpec, user: str, password: str,
               sql: str) -> subprocess.CompletedProcess:
    """The real client on the host, password in the environment, through the published port."""
    env = dict(os.environ)
    if spec.engine == "postgresql":
        env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="5")
        argv = ["psql", "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", spec.publish_ip, "-p", str(spec.host_port), "-U", user,
                "-d", spec.db_name, "-c", sql]
    else:
        env.update(MYSQL_PWD=password)
        argv = ["mysql", "--no-defaults", "--protocol=tcp", "-h", spec.publish_ip,
                "-P", str(spec.host_port), "-u", user, "--connect-timeout=5", "-N", "-B",
                spec.db_name, "-e", sql]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def sql_ok(spec: DatabaseSpec, password: str, sql: str) -> str:
    result = client_cmd(spec, spec.username, password, sql)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def server(request, docker_client, docker_prefix, tmp_path_factory):
    """One running server per engine for the whole module: (spec, password, seconds)."""
    engine = request.param
    images.ensure_image(docker_client, IMAGES[engine])
    spec = DatabaseSpec(
        service_id=SERVICE_IDS[engine], institution_id=70, institution="MSPLS", engine=engine,
        db_name="registre", username="registre_app", limits=LIMITS, prefix=docker_prefix,
        image=images.image_tag(IMAGES[engine]), host_port=devstack.free_port(),
        disk_bytes=DISK, volumes_root=str(tmp_path_factory.mktemp(f"dbvol-{engine}")),
        extra_labels=TEST_LABELS,
    )
    password = secrets.token_urlsafe(12) + PASSWORD_TAIL
    started = time.monotonic()
    database.ensure_database(docker_client, spec, password)
    elapsed = time.monotonic() - started
    yield spec, password, elapsed
    database.remove_database(docker_client, spec)
    volumes.unmount_all(spec.volumes_root)  # safety net: pytest can then delete the tmp dir


def test_connect_with_issued_credentials(server):
    spec, password, elapsed = server
    sql_ok(spec, password, "CREATE TABLE patients (id INT PRIMARY KEY, name VARCHAR(40))")
    sql_ok(spec, password, "INSERT INTO patients VALUES (1, 'Ndayishimiye')")
    assert sql_ok(spec, password, "SELECT name FROM patients") == "Ndayishimiye"
    assert elapsed < 60
    wrong = client_cmd(spec, spec.username, password + "x", "SELECT 1")
    assert wrong.returncode != 0
    for admin in ("postgres", "root"):  # no administrator reachable over the network
        assert client_cmd(spec, admin, "", "SELECT 1").returncode != 0


def test_ensure_twice_same_container_and_reasserts(docker_client, server):
    spec, password, _ = server
    name = database.container_name(spec)
    first = docker_client.containers.get(name).id
    database.set_password(docker_client, spec, "drifted-" + secrets.token_hex(8))
    database.ensure_database(docker_client, spec, password)
    assert docker_client.containers.get(name).id == first
    assert sql_ok(spec, password, "SELECT 1") == "1"  # the password was re-asserted


def test_backup_restore_roundtrip(docker_client, server, tmp_path):
    spec, password, _ = server
    sql_ok(spec, password, "CREATE TABLE visites (id INT, motif VARCHAR(40))")
    sql_ok(spec, password, "INSERT INTO visites VALUES (1, 'consultation'), (2, 'vaccin')")
    dump = database_backup.backup(docker_client, spec, tmp_path / "backups")
    assert re.fullmatch(rf"{database.container_name(spec)}-registre-\d{{8}}T\d{{6}}Z\.sql\.gz",
                        dump.name)
    assert dump.stat().st_mode & 0o777 == 0o600
    assert b"visites" in gzip.decompress(dump.read_bytes())
    second = database_backup.backup(docker_client, spec, tmp_path / "backups")
    assert second != dump  # same second: a new name, never an overwrite

    sql_ok(spec, password, "DROP TABLE visites")
    sql_ok(spec, password, "CREATE TABLE apres_backup (id INT)")
    database_backup.restore(docker_client, spec, dump)
    assert sql_ok(spec, password, "SELECT motif FROM visites ORDER BY id").split() == [
        "consultation", "vaccin"]
    assert client_cmd(spec, spec.username, password, "SELECT * FROM apres_backup").returncode != 0
    if spec.engine == "postgresql":  # loaded as the tenant: it owns what it restored
        owner = "SELECT tableowner FROM pg_tables WHERE tablename = 'visites'"
        assert sql_ok(spec, password, owner) == spec.username
    sql_ok(spec, password, "INSERT INTO visites VALUES (3, 'writable')")


def test_restore_of_a_broken_dump_raises(docker_client, server, tmp_path):
    spec, _, _ = server
    broken = tmp_path / "broken.sql"
    broken.write_text("CREATE TABLE ok_table (id INT);\nTHIS IS NOT SQL;\n")
    with pytest.raises(DatabaseError, match="failed"):
        database_backup.restore(docker_client, spec, broken)


def test_password_rotation(docker_client, server):
    spec, password, _ = server
    new = secrets.token_urlsafe(12) + PASSWORD_TAIL[::-1]
    database.set_password(docker_client, spec, new)
    try:
        assert client_cmd(spec, spec.username, password, "SELECT 1").returncode != 0
        assert sql_ok(spec, new, "SELECT 1") == "1"
    finally:
        database.set_password(docker_client, spec, password)
    assert sql_ok(spec, password, "SELECT 1") == "1"


def test_container_is_hardened_as_specified(docker_client, docker_prefix, server):
    spec, _, _ = server
    container = docker_client.containers.get(database.container_name(spec))
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (
        LIMITS.memory_bytes, LIMITS.nano_cpus, LIMITS.pids)
    uid = container.attrs["Config"]["User"].split(":")[0]
    assert uid != "0" and container.exec_run(["id", "-u"]).output.decode().strip() == uid
    port = "5432/tcp" if spec.engine == "postgresql" else "3306/tcp"
    assert host["PortBindings"] == {port: [{"HostIp": "127.0.0.1",
                                            "HostPort": str(spec.host_port)}]}
    assert set(container.attrs["NetworkSettings"]["Networks"]) == {f"{docker_prefix}-net-70"}
    mounts = container.attrs["Mounts"]
    assert [(m["Name"], m["RW"]) for m in mounts] == [(database.volume_name(spec), True)]
    assert container.labels[runtime.LABEL_KIND] == "database"
    assert container.labels[runtime.LABEL_SERVICE] == str(spec.service_id)
    used, size = volumes.volume_usage(spec.volumes_root, database.volume_name(spec))
    assert size <= DISK and 0 < used < size
    assert container.exec_run(["touch", "/etc/x"]).exit_code != 0  # read-only root


def test_secrets_are_scrubbed_from_errors(docker_client, server):
    from provisioners.database import container_exec as database_exec

    spec, password, _ = server
    with pytest.raises(DatabaseError) as caught:
        database_exec.run(docker_client, database.container_name(spec),
                          ["sh", "-c", 'echo "denied for $SECRET" >&2; exit 3'],
                          user=database.exec_user(docker_client, spec),
                          environment={"SECRET": password}, secrets=(password,))
    assert password not in str(caught.value) and "denied for ***" in str(caught.value)


def test_stop_start_then_remove(docker_client, server):
    spec, password, _ = server
    sql_ok(spec, password, "CREATE TABLE survit (id INT)")
    database.stop_database(docker_client, spec)
    container = docker_client.containers.get(database.container_name(spec))
    assert container.status == "exited"
    assert client_cmd(spec, spec.username, password, "SELECT 1").returncode != 0
    database.start_database(docker_client, spec)
    assert sql_ok(spec, password, "SELECT COUNT(*) FROM survit") == "0"

    database.remove_database(docker_client, spec)
    database.remove_database(docker_client, spec)  # gone already: still fine
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(database.container_name(spec))
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(database.volume_name(spec))
    assert not volumes.is_mounted(spec.volumes_root, database.volume_name(spec))
    assert not any(p.suffix == ".img" for p in Path(spec.volumes_root).iterdir())


@pytest.mark.parametrize("field,value", [
    ("db_name", "Registre"), ("db_name", "1abc"), ("db_name", "a-b"), ("db_name", "x" * 64),
    ("db_name", "postgres"), ("db_name", "mysql"), ("username", "root"),
    ("username", "pg_monitor"), ("username", "a'b"), ("engine", "oracle"),
])
def test_invalid_specs_refused_before_anything_exists(docker_client, docker_prefix, field,
                                                      value):
    spec = DatabaseSpec(service_id=79, institution_id=79, institution="X", engine="postgresql",
                        db_name="ok", username="ok_user", limits=LIMITS, prefix=docker_prefix,
                        image="comgov/postgres:bookworm")
    with pytest.raises(ValueError):
        database.ensure_database(docker_client, replace(spec, **{field: value}), "pw")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(database.container_name(spec))


def test_empty_password_refused(docker_client, docker_prefix):
    spec = DatabaseSpec(service_id=79, institution_id=79, institution="X", engine="mariadb",
                        db_name="ok", username="ok_user", limits=LIMITS, prefix=docker_prefix,
                        image="comgov/mariadb:bookworm")
    with pytest.raises(ValueError):
        database.ensure_database(docker_client, spec, "")

