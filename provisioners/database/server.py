"""Tenant databases: one PostgreSQL or MariaDB server per service, on its institution's network.

The server runs from ``comgov/postgres`` or ``comgov/mariadb`` as its non-root OS user,
with a read-only root filesystem and its data on a (quota) volume. The provisioner never
holds an administrator password: it runs the engine's client inside the container as
the server's OS user. Usage::

    ensure_database(client, spec, password)     # container, database, user; convergent
    set_password(client, spec, new_password)
    remove_database(client, spec)

Backup and restore build on this module: ``provisioners.database.backup``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from provisioners.database.container_exec import run
from provisioners.database.engines import (
    DatabaseError,
    Engine,
    engine_for,
    validate_identifier,
    validate_password,
)
from provisioners.docker import runtime, volumes
from provisioners.docker.runtime import ContainerSpec, Limits

log = logging.getLogger(__name__)

KIND = "database"
READY_TIMEOUT = 120.0
READY_POLL = 0.1
TMP_SIZE = "16m"


@dataclass(frozen=True)
class DatabaseSpec:
    """One service's database server, as the provisioner needs to see it."""

    service_id: int
    institution_id: int
    institution: str  # acronym
    engine: str  # "postgresql" | "mariadb"
    db_name: str
    username: str
    limits: Limits
    prefix: str
    image: str
    host_port: int = 0  # 0: not published, reachable only on the institution's network
    publish_ip: str = "127.0.0.1"
    disk_bytes: int = 0  # 0: plain Docker volume without a size limit
    volumes_root: str = ""
    extra_labels: dict[str, str] = field(default_factory=dict)


def server_container_name(prefix: str, service_id: int) -> str:
    """Name of a database server's container (also its DNS name on the institution's network)."""
    return f"{prefix}-db-{service_id}"


def container_name(spec: DatabaseSpec) -> str:
    return server_container_name(spec.prefix, spec.service_id)


def volume_name(spec: DatabaseSpec) -> str:
    """Name of the volume holding the server's data directory."""
    return f"{spec.prefix}-db-{spec.service_id}-data"


def engine_of(spec: DatabaseSpec) -> Engine:
    """The spec's engine, after checking every name that will reach SQL or Docker."""
    engine = engine_for(spec.engine)
    validate_identifier(spec.db_name, "database name")
    validate_identifier(spec.username, "user name")
    if not 0 <= spec.host_port <= 65535:
        raise ValueError(f"invalid host port {spec.host_port}")
    if spec.disk_bytes and not spec.volumes_root:
        raise ValueError("disk_bytes needs volumes_root (where the quota images live)")
    return engine


def image_user(client: docker.DockerClient, image: str) -> tuple[int, int]:
    """The image's numeric USER: runs the server, owns the data, runs the clients."""
    user = client.images.get(image).attrs.get("Config", {}).get("User") or ""
    uid, _, gid = user.partition(":")
    if not (uid.isdigit() and gid.isdigit()) or uid == "0":
        raise DatabaseError(f"image {image} must set a numeric non-root USER uid:gid, "
                            f"not {user!r}")
    return int(uid), int(gid)


def _labels(spec: DatabaseSpec, kind: str = KIND) -> dict[str, str]:
    return runtime.labels(spec.prefix, kind, service_id=spec.service_id,
                          institution=spec.institution, extra=spec.extra_labels)


def database_container_spec(spec: DatabaseSpec, owner: tuple[int, int]) -> ContainerSpec:
    """The server container: no capability, read-only root, writes to volume and tmpfs."""
    engine = engine_of(spec)
    uid, gid = owner
    ports = {}
    if spec.host_port:
        ports[f"{engine.port}/tcp"] = (spec.publish_ip, spec.host_port)
    return ContainerSpec(
        name=container_name(spec),
        image=spec.image,
        network=runtime.institution_network(spec.prefix, spec.institution_id),
        limits=spec.limits,
        labels=_labels(spec),
        command=engine.server_args(spec.disk_bytes),
        volumes={volume_name(spec): (engine.data_mount, "rw")},
        tmpfs={
            # /run holds the socket directory, created by the server's own user.
            "/run": f"rw,noexec,nosuid,nodev,size=4m,uid={uid},gid={gid},mode=0755",
            "/tmp": f"rw,noexec,nosuid,nodev,size={TMP_SIZE},mode=1777",
        },
        ports=ports,
        user=f"{uid}:{gid}",
    )


def _ensure_server(client: docker.DockerClient, spec: DatabaseSpec, timeout: float) -> float:
    """Network, volume and running container, waited on; returns seconds spent waiting."""
    owner = image_user(client, spec.image)
    cspec = database_container_spec(spec, owner)
    runtime.ensure_institution_network(client, spec.prefix, spec.institution_id,
                                       spec.institution, spec.extra_labels)
    if spec.disk_bytes > 0:
        volumes.ensure_quota_volume(client, volume_name(spec), spec.disk_bytes, _labels(spec),
                                    Path(spec.volumes_root), owner=owner)
    else:
        runtime.ensure_volume(client, volume_name(spec), _labels(spec))
    runtime.ensure_container(client, cspec)
    return wait_ready(client, spec, timeout=timeout)


def ensure_database(
    client: docker.DockerClient, spec: DatabaseSpec, password: str, *,
    timeout: float = READY_TIMEOUT,
) -> None:
    """Converge server, database and user; the password and grants are re-asserted."""
    engine = engine_of(spec)
    validate_password(password)
    started = time.monotonic()
    log.info("event=db.ensure service=%s engine=%s", spec.service_id, spec.engine)
    waited = _ensure_server(client, spec, timeout)
    cmd, env = engine.ensure_sql(spec.db_name, spec.username, password)
    run(client, container_name(spec), cmd, user=exec_user(client, spec), environment=env,
        secrets=(password,))
    log.info("event=db.ensured service=%s engine=%s ready_wait=%.2f total=%.2f",
             spec.service_id, spec.engine, waited, time.monotonic() - started)


def set_password(client: docker.DockerClient, spec: DatabaseSpec, password: str) -> None:
    """Rotate the user's password (sessions already open stay open)."""
    engine = engine_of(spec)
    validate_password(password)
    cmd, env = engine.password_sql(spec.db_name, spec.username, password)
    run(client, container_name(spec), cmd, user=exec_user(client, spec), environment=env,
        secrets=(password,))
    log.info("event=db.password service=%s", spec.service_id)


def wait_ready(client: docker.DockerClient, spec: DatabaseSpec, *,
               timeout: float = READY_TIMEOUT) -> float:
    """Poll the image's readiness command; a dead container or the deadline raises."""
    engine = engine_of(spec)
    name = container_name(spec)
    user = exec_user(client, spec)
    started = time.monotonic()
    container = client.containers.get(name)
    rounds = 0
    while True:
        # The readiness exec is the cheap, frequent check; the container's state is looked at
        # only every few rounds (an inspect each round would double the cost of waiting).
        if rounds % 5 == 0:
            container.reload()
        rounds += 1
        state = container.attrs.get("State", {})
        if state.get("Status") == "running" and not state.get("Restarting"):
            try:
                result = container.exec_run(list(engine.ready_cmd), user=user)
                if result.exit_code == 0:
                    return time.monotonic() - started
            except docker.errors.APIError:
                rounds = 0  # stopped between the check and the exec: look at it again
        elif state.get("Status") in ("exited", "dead") or state.get("Restarting"):
            tail = container.logs(tail=20).decode("utf-8", "replace").strip()
            raise DatabaseError(f"database server {name} is not running "
                                f"({state.get('Status')}, exit {state.get('ExitCode')}): {tail}")
        if time.monotonic() - started > timeout:
            raise DatabaseError(f"database server {name} not ready after {timeout:.0f}s")
        time.sleep(READY_POLL)


def stop_database(client: docker.DockerClient, spec: DatabaseSpec) -> None:
    """Stop the server cleanly; its data stays."""
    runtime.stop_container(client, container_name(spec))
    log.info("event=db.stop service=%s", spec.service_id)


def start_database(client: docker.DockerClient, spec: DatabaseSpec, *,
                   timeout: float = READY_TIMEOUT) -> None:
    """Start again (remounting, re-creating what went missing) and wait until ready."""
    engine_of(spec)
    _ensure_server(client, spec, timeout)
    log.info("event=db.start service=%s", spec.service_id)


def remove_database(client: docker.DockerClient, spec: DatabaseSpec) -> None:
    """Remove container and data volume (with its quota image); what is gone is fine."""
    runtime.remove_container(client, container_name(spec))
    if spec.volumes_root:
        volumes.remove_quota_volume(client, volume_name(spec), Path(spec.volumes_root))
    else:
        runtime.remove_volume(client, volume_name(spec))
    log.info("event=db.remove service=%s", spec.service_id)


def exec_user(client: docker.DockerClient, spec: DatabaseSpec) -> str:
    """uid:gid for execs: the server's OS user, which the engine trusts on its socket."""
    uid, gid = image_user(client, spec.image)
    return f"{uid}:{gid}"
