"""The front proxy: one nginx container that routes each hostname to a tenant container.

Configuration lives in the ``{prefix}-proxy-conf`` volume (``nginx.conf`` plus one
``routes/<route_id>.conf`` per route), rendered from
``templates/provisioning/proxy/*.j2``, written with ``put_archive`` and applied with
SIGHUP, so nothing here needs ``docker exec``. Usage::

    ensure_proxy(client, proxy)
    set_route(client, proxy, "web-42", "www.minisante.gov.bi", "comgov-web-42", "comgov-net-7")
    remove_route(client, proxy, "web-42")
"""
from __future__ import annotations

import io
import ipaddress
import logging
import math
import os
import re
import signal
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import jinja2
from docker.models.containers import Container

from provisioners.docker import runtime
from provisioners.docker.runtime import ContainerSpec, Limits

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "provisioning"
CONF_DIR = "/etc/comgov-proxy"
ROUTES_SUBDIR = "routes"
PAGES_DIR = "/usr/share/comgov/pages"  # 404/502 pages baked into the nginx image
LISTEN_PORT = 8080
UPSTREAM_PORT = 8080
RESOLVER = "127.0.0.11"  # Docker's embedded DNS, present on user-defined networks
NGINX_UID = "33:33"
TMPFS = {
    "/tmp": "rw,noexec,nosuid,nodev,size=64m",
    "/run": "rw,noexec,nosuid,nodev,size=1m",
}
REMOVED_ROUTE = "# route removed\n"  # put_archive cannot delete, so a removed route is emptied

_LABEL_RE = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL_RE}(?:\.{_LABEL_RE})*")
_ROUTE_ID_RE = re.compile(r"[a-z0-9-]{1,64}")
_DOCKER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_NETWORK_LINE_RE = re.compile(r"^# network: (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class ProxySpec:
    """Where the single front proxy listens and what it may use."""

    prefix: str
    image: str
    bind: str
    port: int
    limits: Limits
    extra_labels: dict[str, str] = field(default_factory=dict)


def container_name(prefix: str) -> str:
    """Name of the front proxy container."""
    return f"{prefix}-proxy"


def volume_name(prefix: str) -> str:
    """Name of the volume holding nginx.conf and the route files."""
    return f"{prefix}-proxy-conf"


def network_name(prefix: str) -> str:
    """The proxy's own network: it publishes the port and gives it Docker's DNS."""
    return f"{prefix}-proxy-net"


def validate_hostname(hostname: str) -> str:
    """Refuse anything but a lowercase RFC 1123 name, since it is pasted into nginx."""
    if (
        not isinstance(hostname, str)
        or len(hostname) > 253
        or _HOSTNAME_RE.fullmatch(hostname) is None
    ):
        raise ValueError(f"invalid hostname: {hostname!r}")
    return hostname


def validate_route_id(route_id: str) -> str:
    """Route ids become file names, so only [a-z0-9-]."""
    if not isinstance(route_id, str) or _ROUTE_ID_RE.fullmatch(route_id) is None:
        raise ValueError(f"invalid route id: {route_id!r}")
    return route_id


def _validate_docker_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or _DOCKER_NAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid {kind} name: {name!r}")
    return name


def _environment() -> jinja2.Environment:
    # autoescape is off: the output is nginx syntax, and every value is validated first.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_main(proxy: ProxySpec) -> str:
    """The proxy's nginx.conf (no `daemon off;`: the command line passes it)."""
    workers = max(1, min(8, math.ceil(proxy.limits.nano_cpus / 1_000_000_000)))
    return _environment().get_template("proxy/nginx.conf.j2").render(
        worker_processes=workers,
        worker_connections=1024,
        client_max_body_size="10m",
        resolver=RESOLVER,
        listen_port=LISTEN_PORT,
        pages_dir=PAGES_DIR,
        routes_dir=f"{CONF_DIR}/{ROUTES_SUBDIR}",
    )


def validate_port(port: int) -> int:
    """A TCP port number (bool is refused: True is not port 1)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"invalid upstream port: {port!r} (must be an integer 1-65535)")
    return port


def render_route(
    route_id: str, hostname: str, upstream: str, network: str, upstream_port: int = UPSTREAM_PORT
) -> str:
    """One server block; values are validated here so no caller can skip it."""
    return _environment().get_template("proxy/route.conf.j2").render(
        route_id=validate_route_id(route_id),
        hostname=validate_hostname(hostname),
        upstream=_validate_docker_name("upstream", upstream),
        network=_validate_docker_name("network", network),
        listen_port=LISTEN_PORT,
        upstream_port=validate_port(upstream_port),
        pages_dir=PAGES_DIR,
    )


def proxy_container_spec(proxy: ProxySpec) -> ContainerSpec:
    """The proxy's container, hardened like every tenant container."""
    ipaddress.ip_address(proxy.bind)  # ValueError on anything but an IP literal
    if not 0 < int(proxy.port) < 65536:
        raise ValueError(f"invalid proxy port: {proxy.port!r}")
    return ContainerSpec(
        name=container_name(proxy.prefix),
        image=proxy.image,
        network=network_name(proxy.prefix),
        limits=proxy.limits,
        labels=runtime.labels(proxy.prefix, "proxy", extra=proxy.extra_labels),
        command=["nginx", "-e", "stderr", "-c", f"{CONF_DIR}/nginx.conf", "-g", "daemon off;"],
        volumes={volume_name(proxy.prefix): (CONF_DIR, "rw")},  # rw for put_archive only
        tmpfs=dict(TMPFS),
        ports={f"{LISTEN_PORT}/tcp": (proxy.bind, int(proxy.port))},
        user=NGINX_UID,
    )


def ensure_proxy(client: docker.DockerClient, proxy: ProxySpec) -> Container:
    """Converge the proxy: network, volume, container (recreated on drift), nginx.conf."""
    spec = proxy_container_spec(proxy)
    obj_labels = runtime.labels(proxy.prefix, "proxy", extra=proxy.extra_labels)
    runtime.ensure_network(client, spec.network, obj_labels)
    runtime.ensure_volume(client, volume_name(proxy.prefix), obj_labels)
    container = runtime.ensure_container(client, spec, start=False)
    main = render_main(proxy)
    changed = _read_file(container, f"{CONF_DIR}/nginx.conf") != main
    if changed:
        _write_files(container, {"nginx.conf": main}, dirs=(ROUTES_SUBDIR,))
    # A recreated container is only on its own network: re-attach what the routes need.
    for network in _route_networks(container):
        try:
            runtime.connect_network(client, network, container)
        except docker.errors.NotFound:
            log.warning("event=proxy.network_missing network=%s", network)
    container.reload()
    if container.status != "running":
        container.start()
        container.reload()
        log.info("event=proxy.start container=%s", container.name)
    elif changed:
        _reload(container)
    return container


def stage_route(
    client: docker.DockerClient,
    proxy: ProxySpec,
    route_id: str,
    hostname: str,
    upstream: str,
    network: str,
    upstream_port: int = UPSTREAM_PORT,
) -> Container | None:
    """Write a route file without reloading; returns the proxy to reload, or None if unchanged.

    Nginx only reads it at the next reload, so it can be staged while the upstream starts.
    """
    content = render_route(route_id, hostname, upstream, network, upstream_port)  # validates
    container = _running_proxy(client, proxy)
    runtime.connect_network(client, network, container)
    path = f"{ROUTES_SUBDIR}/{route_id}.conf"
    if _read_file(container, f"{CONF_DIR}/{path}") == content:
        log.info("event=proxy.route route=%s host=%s result=unchanged", route_id, hostname)
        return None
    _write_files(container, {path: content})
    log.info("event=proxy.route route=%s host=%s upstream=%s", route_id, hostname, upstream)
    return container


def set_route(
    client: docker.DockerClient,
    proxy: ProxySpec,
    route_id: str,
    hostname: str,
    upstream: str,
    network: str,
    upstream_port: int = UPSTREAM_PORT,
) -> None:
    """Route hostname to upstream:upstream_port over network; unchanged routes cause no reload."""
    container = stage_route(client, proxy, route_id, hostname, upstream, network, upstream_port)
    if container is not None:
        _reload(container)


def remove_route(client: docker.DockerClient, proxy: ProxySpec, route_id: str) -> None:
    """Drop a route (its file is emptied); a missing route or proxy is success."""
    validate_route_id(route_id)
    try:
        container = client.containers.get(container_name(proxy.prefix))
    except docker.errors.NotFound:
        return
    path = f"{ROUTES_SUBDIR}/{route_id}.conf"
    if _read_file(container, f"{CONF_DIR}/{path}") in (None, REMOVED_ROUTE):
        return
    _write_files(container, {path: REMOVED_ROUTE})
    if container.status == "running":
        _reload(container)
    log.info("event=proxy.route_remove route=%s", route_id)


def reload_proxy(client: docker.DockerClient, prefix: str) -> None:
    """Make the proxy forget cached upstream addresses now (a stopped or recreated site)."""
    try:
        container = client.containers.get(container_name(prefix))
    except docker.errors.NotFound:
        return
    if container.status == "running":
        _reload(container)


def _running_proxy(client: docker.DockerClient, proxy: ProxySpec) -> Container:
    try:
        container = client.containers.get(container_name(proxy.prefix))
    except docker.errors.NotFound:
        return ensure_proxy(client, proxy)
    if container.status != "running":
        return ensure_proxy(client, proxy)
    return container


def _reload(container: Container) -> None:
    """SIGHUP makes the nginx master re-read its configuration (no exec round-trip).

    On the Docker host itself the signal goes straight to the master's process, once it is
    checked to belong to this container: the API call would add ~10 ms to every site's
    first answer. Elsewhere (a worker on another host) the API sends it.
    """
    if not _signal_locally(container, signal.SIGHUP):
        container.kill(signal="SIGHUP")
    log.info("event=proxy.reload container=%s", container.name)


def reload(container: Container) -> None:
    """Reload a proxy container already at hand."""
    _reload(container)


def _signal_locally(container: Container, signum: int) -> bool:
    pid = (container.attrs.get("State") or {}).get("Pid") or 0
    if pid <= 1:
        return False
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh:
            if container.id not in fh.read():
                return False  # not this container's process (another host, or a reused pid)
        os.kill(pid, signum)
    except (OSError, PermissionError):
        return False
    return True


def _write_files(
    container: Container, files: dict[str, str], dirs: tuple[str, ...] = ()
) -> None:
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in dirs:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for path, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(CONF_DIR, buf.getvalue()):
        raise RuntimeError(f"put_archive into {container.name}:{CONF_DIR} failed")


def _read_file(container: Container, path: str) -> str | None:
    """Text of one file in the container, or None if it does not exist."""
    for _name, text in _read_tree(container, path):
        return text
    return None


def _read_tree(container: Container, path: str) -> list[tuple[str, str]]:
    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return []
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r") as tar:
        result = []
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                result.append((member.name, extracted.read().decode("utf-8")))
        return result


def _route_networks(container: Container) -> list[str]:
    networks: set[str] = set()
    for _name, text in _read_tree(container, f"{CONF_DIR}/{ROUTES_SUBDIR}"):
        networks.update(_NETWORK_LINE_RE.findall(text))
    return sorted(networks)
