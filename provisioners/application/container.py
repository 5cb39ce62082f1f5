"""Specialised applications: one catalogue image per service on its institution's network.

The container ``{prefix}-app-{id}`` runs the image with its own user (or ``user``),
the hardened profile (read-only root, tmpfs ``/tmp`` and ``/run``, optional
persistent volume at ``volume_path``), and is reached only through the front proxy
on ``port``. A Docker HEALTHCHECK probes ``health_path``.

Never as root: a user that is unset, ``root``, uid 0 or a name the image's /etc/passwd
maps to uid 0 is replaced by the platform's ``APP_UID:APP_GID`` (10001:10001), unless
``allow_root`` (the catalogue's ``run_as_root_images`` lists the exact image). Every
``VOLUME`` the image declares, other than ``volume_path``, is a tmpfs of
``DECLARED_VOLUME_SIZE`` owned by that user: never an anonymous Docker volume, which
would escape the disk quota. Files read out of an image (/etc/passwd, /etc/group) are
bounded by ``MAX_IMAGE_FILE_BYTES``. Usage::

    env = {"APP_MODE": "production", **database_env("postgresql", "comgov-db-7", 5432,
                                                     "gestion", "gestion", password)}
    ensure_application(client, spec, proxy)    # waits until the health check passes
    stop_application(client, spec); start_application(client, spec, proxy)
    remove_application(client, spec, proxy)

Redeploying (deploy on push, rollback) is blue/green: the new digest runs in a container of
its own, named by ``app_container_name`` with the deployment's marker, next to the old one::

    image = pull_image(client, "registry.dc.gov.bi/minisante/web", "sha256:…", token)
    new = dataclasses.replace(spec, image=image, deployment=12)
    deploy_application(client, spec, new, proxy)  # starts, waits, switches the route; or raises
    retire_containers(client, new)                # stops and removes every other container
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import re
import secrets
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
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
from provisioners.registry.api import DIGEST_RE, TAG_RE

log = logging.getLogger(__name__)

LABEL_HEALTHCHECK = "bi.gov.comgov.healthcheck"  # hash of the probe, so a change recreates
TMPFS = {
    "/tmp": "rw,noexec,nosuid,nodev,size=64m",
    "/run": "rw,noexec,nosuid,nodev,size=4m",
}
# The uid:gid an application runs as when its image would run it as root (no setting: a
# fixed number outside the image's own accounts and the platform's: 33, 999, 998, 2000).
APP_UID = 10001
APP_GID = 10001
DECLARED_VOLUME_SIZE = "64m"  # each tmpfs standing in for a VOLUME of the image
DECLARED_VOLUME_TMPFS = f"rw,noexec,nosuid,nodev,size={DECLARED_VOLUME_SIZE},mode=0755"
MAX_IMAGE_FILE_BYTES = 1 << 20  # a file read out of an image (/etc/passwd): at most 1 MiB
_ARCHIVE_CHUNK = 64 * 1024  # get_archive's read size (docker-py's default is 2 MB)
_TAR_SLACK = 64 * 1024  # headers, padding and end blocks around the file in the tar stream
_MAX_LINKS = 4  # symbolic links followed to reach a file in the image
# Go's os.FileMode type bits in Docker's path stat: directory, link, device, pipe, socket…
_GO_MODE_TYPE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)
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
# An image repository with its registry host, as the engine pulls it: host[:port]/path.
_REPOSITORY_REF_RE = re.compile(
    r"[a-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+")
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
    allow_root: bool = False  # the catalogue lets this exact image run as root
    extra_labels: dict[str, str] = field(default_factory=dict)
    health_interval: int = 10  # seconds between probes (tests use 1)
    deployment: int | None = None  # marker of a redeployment's container (app_container_name)


@dataclass(frozen=True)
class Confinement:
    """What the platform decided from the image: who runs it, which VOLUMEs become tmpfs."""

    user: str | None  # ContainerSpec.user (None: the image's USER, only when root is allowed)
    owner: tuple[int, int] | None  # (uid, gid) owning the data volume and tmpfs; None: root
    image_volumes: tuple[str, ...] = ()  # the image's VOLUME paths, mounted as tmpfs


def app_container_name(prefix: str, service_id: int, deployment: int | None = None) -> str:
    """Name of an application's container (also its DNS name on the institution network).

    The first container is ``{prefix}-app-{id}``; a redeployment starts next to the running
    one, so it gets its own name: ``{prefix}-app-{id}-d{deployment}`` (the deployment's id).
    Every name of a service's containers comes from here; its labels do not change.
    """
    name = f"{prefix}-app-{service_id}"
    if deployment is None:
        return name
    if isinstance(deployment, bool) or not isinstance(deployment, int) or deployment < 1:
        raise ValueError(f"invalid deployment marker {deployment!r}")
    return f"{name}-d{deployment}"


def container_name(app: ApplicationSpec) -> str:
    return app_container_name(app.prefix, app.service_id, app.deployment)


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
    if not isinstance(app.allow_root, bool):
        raise ValueError("allow_root must be true or false")
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


def application_container_spec(app: ApplicationSpec,
                               confinement: Confinement | None = None) -> ContainerSpec:
    """The application's container: no published port, writes only to tmpfs and its volume.

    ``confinement`` (from :func:`image_confinement`, as ensure_application does) sets the
    user and the tmpfs standing in for the image's VOLUMEs; without it, ``app.user``.
    """
    labels = _labels(app)
    check = _healthcheck(app)
    if check is not None:  # part of the spec hash, so a changed probe recreates the container
        canonical = json.dumps(check, sort_keys=True).encode("utf-8")
        labels[LABEL_HEALTHCHECK] = hashlib.sha256(canonical).hexdigest()[:16]
    mounts = {volume_name(app): (app.volume_path, "rw")} if app.volume_path else {}
    tmpfs, user = dict(TMPFS), app.user
    if confinement is not None:
        user = confinement.user
        tmpfs.update({path: declared_volume_tmpfs(confinement.owner)
                      for path in confinement.image_volumes})
    return ContainerSpec(
        name=container_name(app),
        image=app.image,
        network=network_name(app.prefix, app.institution_id),
        limits=app.limits,
        labels=labels,
        environment=dict(app.environment),
        volumes=mounts,
        tmpfs=tmpfs,
        user=user,
    )


def declared_volume_tmpfs(owner: tuple[int, int] | None) -> str:
    """tmpfs options for a VOLUME of the image: bounded, owned by the user the app runs as."""
    if owner is None:
        return DECLARED_VOLUME_TMPFS
    return f"{DECLARED_VOLUME_TMPFS},uid={owner[0]},gid={owner[1]}"


def declared_volumes(volumes: Iterable[str] | None, volume_path: str | None) -> tuple[str, ...]:
    """The image's VOLUME paths (Config.Volumes) that need a tmpfs: not volume_path, not /tmp.

    Docker skips the anonymous volume of a path something else is mounted on, compared after
    cleaning the path: the tmpfs is keyed by the cleaned path.
    """
    paths = set()
    for raw in volumes or ():
        if not isinstance(raw, str) or not raw.startswith("/") or "\x00" in raw:
            raise ValueError(f"the image declares VOLUME {raw!r}: not an absolute path")
        path = "/" + posixpath.normpath(raw).lstrip("/")
        if path == "/":
            raise ValueError("the image declares VOLUME /: it would hide the whole image")
        if path != volume_path and path not in TMPFS:
            paths.add(path)
    return tuple(sorted(paths))


def image_confinement(client: docker.DockerClient, app: ApplicationSpec) -> Confinement:
    """The user the container runs as and the tmpfs for its image's VOLUMEs.

    A non-root user (``app.user``, else the image's USER) is kept; root (unset, ``root``,
    uid 0, a name /etc/passwd maps to uid 0) becomes APP_UID:APP_GID unless allow_root.
    """
    config = client.images.get(app.image).attrs.get("Config") or {}
    configured = app.user or config.get("User") or ""
    owner = _resolve_user(client, app, configured)
    if owner is not None and owner[0] != 0:
        user = configured
    elif app.allow_root:
        user = configured or None
        log.info("event=application.root_allowed service=%s image=%s", app.service_id,
                 app.image)
    else:
        user, owner = f"{APP_UID}:{APP_GID}", (APP_UID, APP_GID)
        log.info("event=application.unprivileged service=%s image=%s image_user=%r user=%s",
                 app.service_id, app.image, configured, user)
    return Confinement(user=user, owner=owner,
                       image_volumes=declared_volumes(config.get("Volumes"), app.volume_path))


def _prepare(client: docker.DockerClient, app: ApplicationSpec
             ) -> tuple[ContainerSpec, Callable[[], None] | None]:
    """Check the spec and the image, decide the user, converge network and data volume.

    Returns the container's spec and what must run before its first start.
    """
    validate_spec(app)
    try:
        client.images.get(app.image)
    except docker.errors.ImageNotFound:
        raise ValueError(f"image {app.image} is not present on this host "
                         "(build or load it first)") from None
    confinement = image_confinement(client, app)  # before anything is created: it may refuse
    spec = application_container_spec(app, confinement)
    log.info("event=application.ensure service=%s host=%s image=%s user=%s container=%s",
             app.service_id, app.hostname, app.image, spec.user, spec.name)
    runtime.ensure_institution_network(client, app.prefix, app.institution_id, app.institution,
                                       app.extra_labels)
    if app.volume_path:
        _ensure_data_volume(client, app, confinement.owner)
    before_start = None  # a plain volume was seeded by Docker at create: give it over
    if app.volume_path and not app.disk_bytes and confinement.owner is not None:
        before_start = partial(_own_plain_volume, client, app, confinement.owner)
    return spec, before_start


def ensure_application(client: docker.DockerClient, app: ApplicationSpec, proxy: ProxySpec,
                       wait_timeout: float = WAIT_TIMEOUT) -> None:
    """Converge network, volume, container and route, then wait (bounded) until healthy."""
    spec, before_start = _prepare(client, app)
    previous = runtime.running_container_id(client, spec.name)
    with ThreadPoolExecutor(max_workers=1) as pool:
        staged = pool.submit(proxy_mod.stage_route, client, proxy, route_id(app), app.hostname,
                             spec.name, spec.network, app.port)
        container = _ensure_container(client, spec, _healthcheck(app), before_start)
        to_reload = staged.result()
    if to_reload is not None or previous != container.id:
        proxy_mod.reload_proxy(client, app.prefix)
    if wait_timeout:
        wait_healthy(client, spec.name, wait_timeout)


def deploy_application(client: docker.DockerClient, current: ApplicationSpec,
                       new: ApplicationSpec, proxy: ProxySpec,
                       wait_timeout: float = WAIT_TIMEOUT,
                       before_switch: Callable[[], None] | None = None) -> None:
    """Blue/green: start ``new`` next to ``current``, wait for its health check, switch the route.

    ``new`` is the same application with another image (a digest) and its own ``deployment``
    marker, hence its own container. If that container does not become healthy within
    ``wait_timeout`` (or cannot be created), it is removed, the route is not touched and
    ``current`` keeps serving; the error is raised (ApplicationUnhealthy for the health check).
    ``before_switch`` runs once the new container is healthy: raising there cancels the switch
    the same way. After the switch the old container still runs: ``retire_containers(client,
    new)`` stops and removes it once the caller has recorded the switch.
    """
    if (new.prefix, new.service_id) != (current.prefix, current.service_id):
        raise ValueError("a deployment replaces a container of the same application")
    if container_name(new) == container_name(current):
        raise ValueError(f"the new deployment needs its own container, not "
                         f"{container_name(current)}")
    spec, before_start = _prepare(client, new)
    log.info("event=application.deploy service=%s image=%s from=%s to=%s", new.service_id,
             new.image, container_name(current), spec.name)
    try:
        _ensure_container(client, spec, _healthcheck(new), before_start)
        wait_healthy(client, spec.name, wait_timeout)
        if before_switch is not None:
            before_switch()
    except BaseException:
        runtime.remove_container(client, spec.name)
        log.warning("event=application.deploy_failed service=%s image=%s", new.service_id,
                    new.image)
        raise
    proxy_mod.set_route(client, proxy, route_id(new), new.hostname, spec.name, spec.network,
                        new.port)
    log.info("event=application.switched service=%s container=%s", new.service_id, spec.name)


def retire_containers(client: docker.DockerClient, app: ApplicationSpec) -> list[str]:
    """Stop (gracefully) and remove every container of the application but ``app``'s own."""
    keep = container_name(app)
    retired = []
    for container in service_containers(client, app):
        if container.name == keep:
            continue
        runtime.stop_container(client, container.name)
        runtime.remove_container(client, container.name)
        retired.append(container.name)
    if retired:
        log.info("event=application.retired service=%s containers=%s", app.service_id,
                 ",".join(retired))
    return retired


def forget_image(client: docker.DockerClient, reference: str) -> bool:
    """Drop an image reference a retired deployment used (the image goes with its last
    reference); one still in use, or already gone, is left as it is."""
    try:
        client.images.remove(reference, noprune=False)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:  # 409: a container still uses it
        log.info("event=application.image_kept image=%s reason=%s", reference,
                 getattr(exc, "explanation", exc))
        return False
    log.info("event=application.image_removed image=%s", reference)
    return True


def service_containers(client: docker.DockerClient, app: ApplicationSpec) -> list[Container]:
    """Every container of the application (any deployment), found by its labels."""
    return client.containers.list(all=True, filters={"label": [
        f"{runtime.LABEL_PREFIX}={app.prefix}", f"{runtime.LABEL_KIND}=application",
        f"{runtime.LABEL_SERVICE}={app.service_id}"]})


def pull_image(client: docker.DockerClient, repository: str, reference: str,
               token: str | None = None) -> str:
    """Pull ``repository`` (with its registry's host) at a tag or digest; return the reference.

    ``token`` is a registry bearer token for the repository's pull scope: the engine sends it
    as it is (it does not ask the token endpoint); None uses the engine's own credentials.
    A digest already on the engine is not pulled again (its content cannot have changed); a
    tag always is. An error the engine reports in the pull's stream is raised (RuntimeError).
    """
    if not isinstance(repository, str) or not _REPOSITORY_REF_RE.fullmatch(repository):
        raise ValueError(f"invalid repository {repository!r}")
    if isinstance(reference, str) and DIGEST_RE.fullmatch(reference):
        ref = f"{repository}@{reference}"
        try:
            client.images.get(ref)
            return ref
        except docker.errors.ImageNotFound:
            pass
    elif isinstance(reference, str) and TAG_RE.fullmatch(reference):
        ref = f"{repository}:{reference}"
    else:
        raise ValueError(f"invalid tag or digest {reference!r}")
    auth = {"registrytoken": token} if token else None
    for line in client.api.pull(repository, tag=reference, stream=True, decode=True,
                                auth_config=auth):
        if isinstance(line, dict) and line.get("error"):
            raise RuntimeError(f"pull of {ref} failed: {line['error']}"[:500])
    client.images.get(ref)  # ImageNotFound if the engine did not keep it
    log.info("event=application.pulled image=%s", ref)
    return ref


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
    """Remove route, containers (every deployment's) and data volume; removing a removed
    application succeeds."""
    proxy_mod.remove_route(client, proxy, route_id(app))
    runtime.remove_container(client, container_name(app))
    for container in service_containers(client, app):
        runtime.remove_container(client, container.name)
    if app.volumes_root:  # also removes a plain volume, and a quota one left from before
        volumes.remove_quota_volume(client, volume_name(app), Path(app.volumes_root))
    else:
        runtime.remove_volume(client, volume_name(app))
    log.info("event=application.remove service=%s", app.service_id)


def _ensure_data_volume(client: docker.DockerClient, app: ApplicationSpec,
                        owner: tuple[int, int] | None) -> None:
    """Plain volume, or a loop-mounted one with a hard size owned by the application's user."""
    if app.disk_bytes > 0:
        volumes.ensure_quota_volume(client, volume_name(app), app.disk_bytes, _labels(app),
                                    Path(app.volumes_root), owner=owner)
    else:
        # Docker copies the image's directory (and its ownership) into a new empty volume
        # when a container using it is created: _own_plain_volume runs after that.
        runtime.ensure_volume(client, volume_name(app), _labels(app))


def _own_plain_volume(client: docker.DockerClient, app: ApplicationSpec,
                      owner: tuple[int, int]) -> None:
    """Give a plain volume's root directory to the user the application runs as.

    Like the chown of a quota volume's root: the daemon extracts one directory entry
    (uid, gid, 0755) onto the volume, mounted in a created, never started, container.
    """
    mount = "/comgov-volume"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(mount.lstrip("/"))
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        info.uid, info.gid = owner
        tar.addfile(info)
    name = f"{container_name(app)}-chown-{secrets.token_hex(3)}"
    helper = client.containers.create(app.image, command=["true"], name=name,
                                      labels=_labels(app, "inspect"), network_mode="none",
                                      volumes={volume_name(app): {"bind": mount, "mode": "rw"}})
    try:
        if not helper.put_archive("/", buf.getvalue()):
            raise RuntimeError(f"could not give volume {volume_name(app)} to uid {owner[0]}")
    finally:
        helper.remove(force=True)


def _volume_owner(client: docker.DockerClient, app: ApplicationSpec) -> tuple[int, int] | None:
    """(uid, gid) of the configured user (``user``, else the image's USER); None for root.

    The user as the image declares it, before the rule against root (image_confinement).
    """
    user = app.user or (client.images.get(app.image).attrs.get("Config") or {}).get("User")
    return _resolve_user(client, app, user or "")


def _resolve_user(client: docker.DockerClient, app: ApplicationSpec,
                  user: str) -> tuple[int, int] | None:
    """(uid, gid) of ``user`` in the image, resolved like Docker does; None for root by name."""
    name, _, group = user.partition(":")
    if name in ("", "root", "0") and not group:
        return None
    if name.isdigit() and group.isdigit():
        return int(name), int(group)
    with _image_reader(client, app) as read:
        passwd = [line.split(":") for line in read("/etc/passwd").splitlines()
                  if line.count(":") >= 6]
        entry = next((e for e in passwd if e[0] == name or (name.isdigit() and e[2] == name)),
                     None)
        if entry is None and not name.isdigit():
            raise ValueError(f"user {name!r} does not exist in image {app.image}")
        try:
            uid = int(name) if name.isdigit() else int(entry[2])
            if not group:
                return uid, int(entry[3]) if entry is not None else 0  # as Docker: no entry, gid 0
        except ValueError:
            raise ValueError(f"user {name!r} has no numeric uid and gid in the /etc/passwd "
                             f"of image {app.image}") from None
        if group.isdigit():
            return uid, int(group)
        groups = [line.split(":") for line in read("/etc/group").splitlines()]
        gid = next((g[2] for g in groups if len(g) >= 3 and g[0] == group), None)
        if gid is None or not gid.isdigit():
            raise ValueError(f"group {group!r} does not exist in image {app.image}")
        return uid, int(gid)


@contextmanager
def _image_reader(client: docker.DockerClient,
                  app: ApplicationSpec) -> Iterator[Callable[[str], str]]:
    """read(path) -> text of a file of the image, from one created (never started) container."""
    name = f"{container_name(app)}-inspect-{secrets.token_hex(3)}"
    container = client.containers.create(app.image, command=["true"], name=name,
                                         labels=_labels(app, "inspect"), network_mode="none")
    try:
        yield lambda path: read_image_file(container, path, app.image)
    finally:
        container.remove(force=True)


def read_image_file(container: Container, path: str, image: str,
                    limit: int = MAX_IMAGE_FILE_BYTES) -> str:
    """A text file of a (created) container's image, "" if missing; never more than ``limit``.

    Symbolic links are followed (Docker resolves them inside the image); a directory or a
    special file, or a file over ``limit`` bytes, is refused before its content is read.
    """
    for _ in range(_MAX_LINKS + 1):
        try:
            stream, stat = container.get_archive(path, chunk_size=_ARCHIVE_CHUNK)
        except docker.errors.NotFound:
            return ""
        stat = stat or {}
        if stat.get("linkTarget"):
            stream.close()
            path = stat["linkTarget"]
            continue
        what = f"{path} in image {image}"
        if int(stat.get("mode") or 0) & _GO_MODE_TYPE:
            stream.close()
            raise ValueError(f"{what} is not a regular file")
        size = int(stat.get("size") or 0)
        if size > limit:
            stream.close()
            raise ValueError(f"{what} is {size} bytes: the platform reads at most {limit} "
                             "bytes of a file in an image")
        data = read_bounded(stream, limit + _TAR_SLACK, what)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise ValueError(f"{what} is not a regular file")
            if member.size > limit:
                raise ValueError(f"{what} is {member.size} bytes: the platform reads at most "
                                 f"{limit} bytes of a file in an image")
            return tar.extractfile(member).read().decode("utf-8", "replace")
    raise ValueError(f"{path} in image {image}: more than {_MAX_LINKS} symbolic links")


def read_bounded(chunks: Iterable[bytes], limit: int, what: str) -> bytes:
    """Join a stream of chunks, stopping (and closing it) as soon as it passes ``limit``."""
    buf = bytearray()
    try:
        for chunk in chunks:
            buf += chunk
            if len(buf) > limit:
                raise ValueError(f"{what} is larger than {limit} bytes: the platform stopped "
                                 "reading it")
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return bytes(buf)


def _ensure_container(client: docker.DockerClient, spec: ContainerSpec,
                      healthcheck: dict | None,
                      before_start: Callable[[], None] | None = None) -> Container:
    """runtime.ensure_container plus a HEALTHCHECK (ContainerSpec has no field for one).

    ``before_start`` runs when the container is created or stopped, before it starts.
    """
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
        if before_start is not None:
            before_start()
        container.start()
        container.reload()
        log.info("event=container.start container=%s", spec.name)
    return container
