"""The one hardened container specification, and convergent Docker primitives built on it.

Every tenant and platform container goes through :func:`hardened_options`, so the
isolation rules (no capabilities, no privilege gain, read-only root, hard limits)
live in one place. Usage::

    spec = ContainerSpec(name="comgov-web-42", image="comgov/nginx:bookworm",
                         network="comgov-net-7", limits=Limits(128 << 20, 500_000_000, 64),
                         labels=labels("comgov", "website", service_id=42, institution="MSPLS"))
    ensure_network(client, spec.network, labels("comgov", "network", institution="MSPLS"))
    ensure_container(client, spec)   # run twice: same container
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.models.networks import Network
from docker.models.volumes import Volume
from docker.types import LogConfig

log = logging.getLogger(__name__)

LABEL_MANAGED = "bi.gov.comgov.managed"
LABEL_PREFIX = "bi.gov.comgov.prefix"
LABEL_SERVICE = "bi.gov.comgov.service"
LABEL_INSTITUTION = "bi.gov.comgov.institution"
LABEL_KIND = "bi.gov.comgov.kind"
LABEL_SPEC_HASH = "bi.gov.comgov.spec-hash"

# Bumped when hardened_options() changes meaning, so existing containers get recreated.
SPEC_VERSION = 1
LOG_MAX_SIZE = "10m"
LOG_MAX_FILES = "3"
STOP_TIMEOUT = 10


@dataclass(frozen=True)
class Limits:
    """Hard resource ceilings; one tenant must not starve the host or its neighbours."""

    memory_bytes: int
    nano_cpus: int
    pids: int


@dataclass(frozen=True)
class ContainerSpec:
    """Everything that defines a container; its hash detects drift."""

    name: str
    image: str
    network: str
    limits: Limits
    labels: dict[str, str]
    command: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (path, ro|rw)
    tmpfs: dict[str, str] = field(default_factory=dict)  # path -> mount options
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)  # "8080/tcp" -> (ip, port)
    user: str | None = None
    cap_add: tuple[str, ...] = ()


def labels(
    prefix: str,
    kind: str,
    service_id: int | str | None = None,
    institution: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Labels that tie a Docker object to its prefix, kind, service and institution."""
    result = dict(extra or {})
    result.update({LABEL_MANAGED: "1", LABEL_PREFIX: prefix, LABEL_KIND: kind})
    if service_id is not None:
        result[LABEL_SERVICE] = str(service_id)
    if institution is not None:
        result[LABEL_INSTITUTION] = institution
    return result


def spec_hash(spec: ContainerSpec) -> str:
    """sha256 of the canonical spec, stored as a label to notice drift cheaply."""
    payload = {"version": SPEC_VERSION, **asdict(spec)}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def institution_network(prefix: str, institution_id: int) -> str:
    """One network per institution: its services see each other, not other institutions'."""
    return f"{prefix}-net-{institution_id}"


def ensure_institution_network(client: docker.DockerClient, prefix: str, institution_id: int,
                               institution: str, extra_labels: dict[str, str]) -> Network:
    """The institution's network, labelled like every platform object."""
    return ensure_network(client, institution_network(prefix, institution_id),
                          labels(prefix, "network", institution=institution,
                                 extra=extra_labels))


def hardened_options(spec: ContainerSpec) -> dict[str, Any]:
    """kwargs for client.containers.create: the single hardened container profile."""
    for mode in (m for _, m in spec.volumes.values()):
        if mode not in ("ro", "rw"):
            raise ValueError(f"volume mode must be 'ro' or 'rw', not {mode!r}")
    options: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "command": list(spec.command) if spec.command is not None else None,
        "environment": dict(spec.environment),
        "labels": {**spec.labels, LABEL_SPEC_HASH: spec_hash(spec)},
        "mem_limit": spec.limits.memory_bytes,
        "memswap_limit": spec.limits.memory_bytes,  # equal to memory: no swap
        "nano_cpus": spec.limits.nano_cpus,
        "pids_limit": spec.limits.pids,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": dict(spec.tmpfs),
        "ipc_mode": "private",
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": LogConfig(
            type=LogConfig.types.JSON,
            config={"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILES},
        ),
        "ports": {port: (ip, host_port) for port, (ip, host_port) in spec.ports.items()},
        "volumes": {name: {"bind": path, "mode": mode}
                    for name, (path, mode) in spec.volumes.items()},
    }
    if spec.cap_add:
        options["cap_add"] = list(spec.cap_add)
    if spec.user is not None:
        options["user"] = spec.user
    if spec.network == "host":
        raise ValueError("host networking would bypass the per-institution isolation")
    if spec.network == "none":
        options["network_mode"] = "none"
    else:
        options["network"] = spec.network
    return options


def ensure_network(client: docker.DockerClient, name: str, labels: dict[str, str]) -> Network:
    """A bridge network per institution, so tenants of different institutions cannot talk."""
    try:
        return client.networks.get(name)
    except docker.errors.NotFound:
        pass
    try:
        network = client.networks.create(
            name, driver="bridge", labels=dict(labels), check_duplicate=True
        )
        log.info("event=network.create network=%s", name)
        return network
    except docker.errors.APIError as exc:
        if not _is_conflict(exc):
            raise
        log.info("event=network.create_race network=%s", name)
        return client.networks.get(name)


def ensure_volume(client: docker.DockerClient, name: str, labels: dict[str, str]) -> Volume:
    """A named local volume; creation is idempotent on the daemon side as well."""
    try:
        return client.volumes.get(name)
    except docker.errors.NotFound:
        volume = client.volumes.create(name=name, driver="local", labels=dict(labels))
        log.info("event=volume.create volume=%s", name)
        return volume


def ensure_container(
    client: docker.DockerClient, spec: ContainerSpec, start: bool = True
) -> Container:
    """Create if missing, recreate on spec or image drift, start if asked and not running."""
    options = hardened_options(spec)
    wanted_hash = options["labels"][LABEL_SPEC_HASH]
    image_id = client.images.get(spec.image).id
    container = _get_container(client, spec.name)
    if container is not None:
        current = container.labels
        if current.get(LABEL_MANAGED) != "1":
            raise RuntimeError(f"container {spec.name} exists but is not managed by the platform")
        if current.get(LABEL_SPEC_HASH) != wanted_hash or container.attrs.get("Image") != image_id:
            log.info("event=container.recreate container=%s reason=drift", spec.name)
            _force_remove(container)
            container = None
    if container is None:
        container = _create(client, options)
    if start and container.status != "running":
        container.start()
        container.reload()
        log.info("event=container.start container=%s", spec.name)
    return container


def start_container(client: docker.DockerClient, name: str) -> None:
    """Start an existing container (no-op when it already runs); NotFound propagates."""
    container = client.containers.get(name)
    if container.status != "running":
        container.start()
        log.info("event=container.start container=%s", name)


def stop_container(client: docker.DockerClient, name: str) -> None:
    """Stop a container; a missing one is as stopped as it gets."""
    try:
        client.containers.get(name).stop(timeout=STOP_TIMEOUT)
        log.info("event=container.stop container=%s", name)
    except docker.errors.NotFound:
        log.info("event=container.stop container=%s result=absent", name)


def remove_container(client: docker.DockerClient, name: str) -> None:
    """Force-remove a container (and its anonymous volumes); NotFound is success."""
    container = _get_container(client, name)
    if container is not None:
        _force_remove(container)
    log.info("event=container.remove container=%s", name)


def remove_volume(client: docker.DockerClient, name: str) -> None:
    """Remove a named volume; NotFound is success."""
    try:
        client.volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    log.info("event=volume.remove volume=%s", name)


def remove_network(client: docker.DockerClient, name: str) -> None:
    """Remove a network; NotFound is success (still-attached containers make it fail)."""
    try:
        client.networks.get(name).remove()
    except docker.errors.NotFound:
        pass
    log.info("event=network.remove network=%s", name)


def list_containers(
    client: docker.DockerClient, prefix: str, kind: str | None = None
) -> list[Container]:
    """Managed containers under a prefix; ones removed while listing are skipped."""
    wanted = [f"{LABEL_MANAGED}=1", f"{LABEL_PREFIX}={prefix}"]
    if kind is not None:
        wanted.append(f"{LABEL_KIND}={kind}")
    return client.containers.list(all=True, filters={"label": wanted}, ignore_removed=True)


def connect_network(client: docker.DockerClient, network: str, container: Container) -> None:
    """Attach a container to a network unless it already is (a concurrent attach is fine)."""
    container.reload()
    if network in (container.attrs.get("NetworkSettings", {}).get("Networks") or {}):
        return
    try:
        client.networks.get(network).connect(container)
        log.info("event=network.connect network=%s container=%s", network, container.name)
    except docker.errors.APIError as exc:
        if not _is_conflict(exc) and "already exists" not in str(exc):
            raise


def _get_container(client: docker.DockerClient, name: str) -> Container | None:
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _create(client: docker.DockerClient, options: dict[str, Any]) -> Container:
    name = options["name"]
    try:
        container = client.containers.create(**options)
    except docker.errors.APIError as exc:
        if not _is_conflict(exc):
            raise
        # Another worker created it between our get and create: converge on theirs.
        container = client.containers.get(name)
        if container.labels.get(LABEL_SPEC_HASH) != options["labels"][LABEL_SPEC_HASH]:
            raise
        return container
    log.info("event=container.create container=%s image=%s", name, options["image"])
    return container


def _force_remove(container: Container) -> None:
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def _is_conflict(exc: docker.errors.APIError) -> bool:
    return exc.status_code == 409 or "already exists" in str(exc)


def running_container_id(client: docker.DockerClient, name: str) -> str | None:
    """The id of the container `name` if it is running, else None."""
    try:
        container = client.containers.get(name)
        return container.id if container.status == "running" else None
    except docker.errors.NotFound:
        return None
