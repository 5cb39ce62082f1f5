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
    from provisioners.runtime import Limits

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
