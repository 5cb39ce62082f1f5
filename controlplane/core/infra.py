"""What the worker needs to reach the real components: Docker client and platform specs."""
from __future__ import annotations

from pathlib import Path

from flask import current_app


def docker_client():
    """One Docker client per process (its API version negotiated once)."""
    client = current_app.extensions.get("docker")
    if client is None:
        import docker

        client = docker.from_env(timeout=120)
        current_app.extensions["docker"] = client
    return client


def limits(size):
    from provisioners.docker.runtime import Limits

    return Limits(size.memory_bytes, size.nano_cpus, size.pids)


def volumes_root() -> str:
    """Where loop-mounted quota volumes live ('' = plain Docker volumes, no hard limit)."""
    root = current_app.config.get("VOLUMES_ROOT")
    if root is None:
        root = str(Path(current_app.instance_path) / "volumes")
    return root


def common() -> dict:
    """Fields every service spec takes from configuration."""
    cfg = current_app.config
    return {"prefix": cfg["DOCKER_PREFIX"], "extra_labels": dict(cfg["DOCKER_EXTRA_LABELS"])}


def proxy_spec():
    from provisioners.proxy import ProxySpec

    cfg = current_app.config
    size = current_app.extensions["policies"].platform["proxy"]
    return ProxySpec(image=cfg["SITE_IMAGE"], bind=cfg["PROXY_BIND"], port=int(cfg["PROXY_PORT"]),
                     limits=limits(size), **common())


def ensure_proxy() -> None:
    from provisioners import proxy

    proxy.ensure_proxy(docker_client(), proxy_spec())


def public_url(hostname: str) -> str:
    cfg = current_app.config
    port = int(cfg["PROXY_PORT"])
    scheme = cfg["PUBLIC_URL_SCHEME"]
    suffix = "" if port == (443 if scheme == "https" else 80) else f":{port}"
    return f"{scheme}://{hostname}{suffix}/"


def backups_root() -> Path:
    root = current_app.config.get("BACKUPS_ROOT")
    return Path(root) if root else Path(current_app.instance_path) / "backups"


def probe_through_proxy(hostname: str, path: str = "/") -> tuple[bool, str]:
    """What a visitor gets: an HTTP GET through the front proxy with the service's host name."""
    from provisioners import probes as health

    bind = current_app.config["PROXY_BIND"]
    result = health.http_probe(bind if bind not in ("0.0.0.0", "") else "127.0.0.1",
                               int(current_app.config["PROXY_PORT"]), host_header=hostname,
                               path=path)
    return result.ok, f"HTTP {result.detail} ({result.latency_ms:.0f} ms)"


def write_targz(chunks, dest: Path, stem: str) -> Path:
    """Save a tar stream (as Docker's get_archive yields it) as <stem>-<UTC time>.tar.gz, 0600."""
    import gzip
    import os
    from datetime import datetime, timezone

    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = dest / f"{stem}-{stamp}.tar.gz"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        for chunk in chunks:
            gz.write(chunk)
    return path


def allocate_port(svc, key: str, kinds: tuple[str, ...], port_range: tuple[int, int],
                  publish_ip: str, what: str) -> int:
    """A host port for `svc`, kept in svc.params[key]: free on the host, unique among the live
    services of `kinds`. A Redis lock makes concurrent workers pick different ports."""
    import socket

    from sqlalchemy import select

    from controlplane.worker import queue as tasks
    from controlplane.core.extensions import db
    from controlplane.core.models import Service

    if (svc.params or {}).get(key):
        return int(svc.params[key])
    low, high = (int(v) for v in port_range)
    with tasks.redis_connection().lock(f"controlplane:lock:port:{key}", timeout=30,
                                       blocking_timeout=30):
        used = {int(other.params[key]) for other in db.session.scalars(select(Service).where(
            Service.kind.in_(kinds), Service.status != "deleted")) if (other.params or {}).get(key)}
        for port in range(low, high + 1):
            if port in used:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((publish_ip, port))
                except OSError:
                    continue
            svc.params = dict(svc.params or {}, **{key: port})
            db.session.commit()
            return port
    raise RuntimeError(f"no free port left in {low}-{high} for {what}")
