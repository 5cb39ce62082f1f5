"""Specialised applications: one catalogue image per service on its institution's network.

The container ``{prefix}-app-{id}`` runs the image with its own user (or ``user``),
the hardened profile (read-only root, tmpfs ``/tmp`` and ``/run``, optional
persistent volume at ``volume_path``), and is reached only through the front proxy
on ``port``. A Docker HEALTHCHECK probes ``health_path``. Usage::

    env = {"APP_MODE": "production", **database_env("postgresql", "comgov-db-7", 5432,
                                                     "gestion", "gestion", password)}
    ensure_application(client, spec, proxy)    # waits until the health check passes
    stop_application(client, spec); start_application(client, spec, proxy)
    remove_application(client, spec, proxy)
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import secrets
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import docker
import docker.errors
from docker.models.containers import Container

from provisioners import proxy as proxy_mod
from provisioners.application.healthcheck import (  # noqa: F401  (re-exported for callers)
    WAIT_TIMEOUT,
    ApplicationUnhealthy,
    healthcheck_options,
    wait_healthy,
)
from provisioners.database.server import server_container_name
from provisioners.docker import runtime, volumes
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.proxy import ProxySpec

log = logging.getLogger(__name__)

LABEL_HEALTHCHECK = "bi.gov.comgov.healthcheck"  # hash of the probe, so a change recreates
TMPFS = {
    "/tmp": "rw,noexec,nosuid,nodev,size=64m",
    "/run": "rw,noexec,nosuid,nodev,size=4m",
}
MAX_ENV_VARS = 100
MAX_ENV_NAME = 128
MAX_ENV_VALUE = 32 * 1024  # bytes (UTF-8) per value
MAX_ENV_TOTAL = 256 * 1024  # bytes for names and values together
DATABASE_ENGINES = {"postgresql": "postgresql", "postgres": "postgresql",
                    "mysql": "mysql", "mariadb": "mysql"}
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306}

_ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,511}")
_VOLUME_PATH_RE = re.compile(r"(/[A-Za-z0-9._-]+)+")
_USER_RE = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,31}(:[a-z0-9_][a-z0-9_.-]{0,31})?")
_DB_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_$-]{0,62}")
_FORBIDDEN_MOUNTS = ("/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib",
                     "/lib64", "/boot", "/run", "/tmp")


@dataclass(frozen=True)
class ApplicationSpec:
    """One institution's application, as the provisioner needs to see it."""

    service_id: int
    institution_id: int
    institution: str  # acronym
    hostname: str
    image: str
    port: int  # the one HTTP port inside the container
    environment: dict[str, str]
    health_path: str | None  # e.g. "/health"; None keeps the image's own HEALTHCHECK, if any
    limits: Limits
    prefix: str
    volume_path: str | None  # persistent volume mount point, or None
    disk_bytes: int = 0  # >0: a loop-mounted volume with a hard quota (provisioners.docker.volumes)
    volumes_root: str = ""  # where provisioners.docker.volumes keeps the loop images
    user: str | None = None  # None: the image's USER
    extra_labels: dict[str, str] = field(default_factory=dict)
    health_interval: int = 10  # seconds between probes (tests use 1)


def app_container_name(prefix: str, service_id: int) -> str:
    """Name of an application's container (also its DNS name on the institution network)."""
    return f"{prefix}-app-{service_id}"


def container_name(app: ApplicationSpec) -> str:
    return app_container_name(app.prefix, app.service_id)


def volume_name(app: ApplicationSpec) -> str:
    """Name of the application's persistent volume (when volume_path is set)."""
    return f"{app.prefix}-app-{app.service_id}-data"


network_name = runtime.institution_network  # one per institution, shared by its services


def route_id(app: ApplicationSpec) -> str:
    """The proxy route (file) serving this application."""
    return f"app-{app.service_id}"


# A bound database is reached by its server container's name on the institution network.
database_host = server_container_name


# --- validation ------------------------------------------------------------------------------
def validate_environment(environment: dict[str, str]) -> dict[str, str]:
    """Refuse names and values Docker or the application would choke on, with clear messages."""
    if not isinstance(environment, dict):
        raise ValueError("environment must be a mapping of names to values")
    if len(environment) > MAX_ENV_VARS:
        raise ValueError(f"too many environment variables: {len(environment)} "
                         f"(at most {MAX_ENV_VARS})")
    total = 0
    for name, value in environment.items():
        if not isinstance(name, str) or len(name) > MAX_ENV_NAME \
                or _ENV_NAME_RE.fullmatch(name) is None:
            raise ValueError(f"invalid environment variable name {name!r}: use capital letters, "
                             f"digits and '_', not starting with a digit, at most "
                             f"{MAX_ENV_NAME} characters")
        if not isinstance(value, str):
            raise ValueError(f"environment variable {name} must be text")
        if "\x00" in value:
            raise ValueError(f"environment variable {name} contains a NUL character")
        size = len(value.encode("utf-8"))
        if size > MAX_ENV_VALUE:
            raise ValueError(f"environment variable {name} is {size} bytes "
                             f"(at most {MAX_ENV_VALUE})")
        total += size + len(name) + 1
    if total > MAX_ENV_TOTAL:
        raise ValueError(f"environment is {total} bytes in total (at most {MAX_ENV_TOTAL})")
    return dict(environment)


def validate_spec(app: ApplicationSpec) -> None:
    """Check everything that reaches Docker or nginx before anything is created."""
    proxy_mod.validate_hostname(app.hostname)
    proxy_mod.validate_port(app.port)
    validate_environment(app.environment)
    if app.health_path is not None and (not isinstance(app.health_path, str)
                                        or _HEALTH_PATH_RE.fullmatch(app.health_path) is None):
        raise ValueError(f"invalid health path {app.health_path!r}: an absolute URL path such "
                         "as /health, without spaces")
    if app.volume_path is not None:
        parts = app.volume_path.split("/")
        if _VOLUME_PATH_RE.fullmatch(app.volume_path) is None or ".." in parts or "." in parts:
            raise ValueError(f"invalid volume path {app.volume_path!r}: an absolute path "
                             "such as /var/lib/app")
        if any(app.volume_path == p or app.volume_path.startswith(p + "/")
               for p in _FORBIDDEN_MOUNTS):
            raise ValueError(f"volume path {app.volume_path!r} would hide a system directory")
    if isinstance(app.disk_bytes, bool) or not isinstance(app.disk_bytes, int) \
            or app.disk_bytes < 0:
        raise ValueError(f"invalid disk size {app.disk_bytes!r}")
    if app.disk_bytes and app.volume_path is None:
        raise ValueError("a disk quota needs a volume path")
    if app.disk_bytes and not app.volumes_root:
        raise ValueError("disk_bytes needs volumes_root (where the quota images live)")
    if app.user is not None and _USER_RE.fullmatch(app.user) is None:
        raise ValueError(f"invalid user {app.user!r}: a name or uid, optionally ':group'")
    if isinstance(app.health_interval, bool) or not isinstance(app.health_interval, int) \
            or not 1 <= app.health_interval <= 300:
        raise ValueError("health_interval must be 1-300 seconds")


def database_env(engine: str, host: str, port: int, db: str, user: str,
                 password: str) -> dict[str, str]:
    """Connection settings that bind an application to one of its institution's databases."""
    scheme = DATABASE_ENGINES.get(engine.lower() if isinstance(engine, str) else engine)
    if scheme is None:
        raise ValueError(f"unknown database engine {engine!r} "
                         f"(expected one of {', '.join(sorted(DATABASE_ENGINES))})")
    proxy_mod.validate_hostname(host)
    proxy_mod.validate_port(port)
    for what, value in (("database name", db), ("database user", user)):
        if not isinstance(value, str) or _DB_NAME_RE.fullmatch(value) is None:
            raise ValueError(f"invalid {what} {value!r}")
    if not isinstance(password, str) or not password or "\x00" in password:
        raise ValueError("database password must be non-empty text without NUL")
    url = (f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}"
           f"@{host}:{port}/{quote(db, safe='')}")
    return {"DATABASE_URL": url, "DB_HOST": host, "DB_PORT": str(port), "DB_NAME": db,
            "DB_USER": user, "DB_PASSWORD": password}


# --- provisioning ----------------------------------------------------------------------------
def _labels(app: ApplicationSpec, kind: str = "application") -> dict[str, str]:
    return runtime.labels(app.prefix, kind, service_id=app.service_id,
                          institution=app.institution, extra=app.extra_labels)


def _healthcheck(app: ApplicationSpec) -> dict | None:
    if app.health_path is None:
        return None
    return healthcheck_options(app.port, app.health_path, app.hostname, app.health_interval)


def application_container_spec(app: ApplicationSpec) -> ContainerSpec:
    """The application's container: no published port, writes only to tmpfs and its volume."""
    labels = _labels(app)
    check = _healthcheck(app)
    if check is not None:  # part of the spec hash, so a changed probe recreates the container
        canonical = json.dumps(check, sort_keys=True).encode("utf-8")
        labels[LABEL_HEALTHCHECK] = hashlib.sha256(canonical).hexdigest()[:16]
    mounts = {volume_name(app): (app.volume_path, "rw")} if app.volume_path else {}
    return ContainerSpec(
        name=container_name(app),
        image=app.image,
        network=network_name(app.prefix, app.institution_id),
        limits=app.limits,
        labels=labels,
        environment=dict(app.environment),
        volumes=mounts,
        tmpfs=dict(TMPFS),
        user=app.user,
    )


def ensure_application(client: docker.DockerClient, app: ApplicationSpec, proxy: ProxySpec,
                       wait_timeout: float = WAIT_TIMEOUT) -> None:
    """Converge network, volume, container and route, then wait (bounded) until healthy."""
    validate_spec(app)
    try:
        client.images.get(app.image)
    except docker.errors.ImageNotFound:
        raise ValueError(f"image {app.image} is not present on this host "
                         "(build or load it first)") from None
    spec = application_container_spec(app)
    log.info("event=application.ensure service=%s host=%s image=%s",
             app.service_id, app.hostname, app.image)
    runtime.ensure_institution_network(client, app.prefix, app.institution_id, app.institution,
                                       app.extra_labels)
    if app.volume_path:
        _ensure_data_volume(client, app)
    previous = _running_container_id(client, spec.name)
    with ThreadPoolExecutor(max_workers=1) as pool:
        staged = pool.submit(proxy_mod.stage_route, client, proxy, route_id(app), app.hostname,
                             spec.name, spec.network, app.port)
        container = _ensure_container(client, spec, _healthcheck(app))
        to_reload = staged.result()
    if to_reload is not None or previous != container.id:
        proxy_mod.reload_proxy(client, app.prefix)
    if wait_timeout:
        wait_healthy(client, spec.name, wait_timeout)


def stop_application(client: docker.DockerClient, app: ApplicationSpec) -> None:
    """Stop the application; the proxy answers its 'service stopped' page meanwhile."""
    runtime.stop_container(client, container_name(app))
    proxy_mod.reload_proxy(client, app.prefix)
    log.info("event=application.stop service=%s", app.service_id)


def start_application(client: docker.DockerClient, app: ApplicationSpec, proxy: ProxySpec,
                      wait_timeout: float = WAIT_TIMEOUT) -> None:
    """Start again, re-creating whatever went missing while it was stopped."""
    ensure_application(client, app, proxy, wait_timeout)
    log.info("event=application.start service=%s", app.service_id)


def remove_application(client: docker.DockerClient, app: ApplicationSpec,
                       proxy: ProxySpec) -> None:
    """Remove route, container and data volume; removing a removed application succeeds."""
    proxy_mod.remove_route(client, proxy, route_id(app))
    runtime.remove_container(client, container_name(app))
    if app.volumes_root:  # also removes a plain volume, and a quota one left from before
        volumes.remove_quota_volume(client, volume_name(app), Path(app.volumes_root))
    else:
        runtime.remove_volume(client, volume_name(app))
    log.info("event=application.remove service=%s", app.service_id)


def _ensure_data_volume(client: docker.DockerClient, app: ApplicationSpec) -> None:
    """Plain volume, or a loop-mounted one with a hard size owned by the application's user."""
    if app.disk_bytes > 0:
        volumes.ensure_quota_volume(client, volume_name(app), app.disk_bytes, _labels(app),
                                    Path(app.volumes_root), owner=_volume_owner(client, app))
    else:
        # Docker copies the image's directory (and its ownership) into a new empty volume.
        runtime.ensure_volume(client, volume_name(app), _labels(app))


def _volume_owner(client: docker.DockerClient, app: ApplicationSpec) -> tuple[int, int] | None:
    """(uid, gid) the container runs as, resolved like Docker does; None for root."""
    user = app.user or client.images.get(app.image).attrs.get("Config", {}).get("User") or ""
    name, _, group = user.partition(":")
    if name in ("", "root", "0") and not group:
        return None
    if name.isdigit() and group.isdigit():
        return int(name), int(group)
    passwd = [line.split(":") for line in _image_file(client, app, "/etc/passwd").splitlines()
              if line.count(":") >= 6]
    entry = next((e for e in passwd if e[0] == name or (name.isdigit() and e[2] == name)), None)
    if entry is None and not name.isdigit():
        raise ValueError(f"user {name!r} does not exist in image {app.image}")
    uid = int(name) if name.isdigit() else int(entry[2])
    if not group:
        return uid, int(entry[3]) if entry is not None else 0  # as Docker: no entry, gid 0
    if group.isdigit():
        return uid, int(group)
    groups = [line.split(":") for line in _image_file(client, app, "/etc/group").splitlines()]
    gid = next((g[2] for g in groups if len(g) >= 3 and g[0] == group), None)
    if gid is None:
        raise ValueError(f"group {group!r} does not exist in image {app.image}")
    return uid, int(gid)


def _image_file(client: docker.DockerClient, app: ApplicationSpec, path: str) -> str:
    """A small text file of the image, read from a created (never started) container."""
    name = f"{container_name(app)}-inspect-{secrets.token_hex(3)}"
    container = client.containers.create(app.image, command=["true"], name=name,
                                         labels=_labels(app, "inspect"), network_mode="none")
    try:
        stream, _ = container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.next()
            data = tar.extractfile(member) if member is not None and member.isfile() else None
            return data.read(1 << 20).decode("utf-8", "replace") if data else ""
    except docker.errors.NotFound:
        return ""
    finally:
        container.remove(force=True)


def _running_container_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        container = client.containers.get(name)
        return container.id if container.status == "running" else None
    except docker.errors.NotFound:
        return None


def _ensure_container(client: docker.DockerClient, spec: ContainerSpec,
                      healthcheck: dict | None) -> Container:
    """runtime.ensure_container plus a HEALTHCHECK (ContainerSpec has no field for one)."""
    options = runtime.hardened_options(spec)
    if healthcheck is not None:
        options["healthcheck"] = healthcheck
    wanted = options["labels"][runtime.LABEL_SPEC_HASH]
    image_id = client.images.get(spec.image).id
    try:
        container = client.containers.get(spec.name)
    except docker.errors.NotFound:
        container = None
    if container is not None:
        if container.labels.get(runtime.LABEL_MANAGED) != "1":
            raise RuntimeError(f"container {spec.name} exists but is not managed by the platform")
        if container.labels.get(runtime.LABEL_SPEC_HASH) != wanted \
                or container.attrs.get("Image") != image_id:
            log.info("event=container.recreate container=%s reason=drift", spec.name)
            runtime.remove_container(client, spec.name)
            container = None
    if container is None:
        try:
            container = client.containers.create(**options)
            log.info("event=container.create container=%s image=%s", spec.name, spec.image)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            container = client.containers.get(spec.name)  # a concurrent job created it
            if container.labels.get(runtime.LABEL_SPEC_HASH) != wanted:
                raise
    if container.status != "running":
        container.start()
        container.reload()
        log.info("event=container.start container=%s", spec.name)
    return container
