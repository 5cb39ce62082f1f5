"""Clients of the real components, and the fields every provisioner spec takes from settings.

One Docker client per process (its API version negotiated once); the directory's connection
settings; platform images as containers name them (pinned by digest); sizes turned into
container limits; where quota volumes and backups live.
"""
from __future__ import annotations

import gzip
import os
from datetime import datetime, timezone
from pathlib import Path

import docker
from flask import current_app

from provisioners.directory import tree as directory
from provisioners.docker.runtime import Limits
from provisioners.images import pins


def docker_client() -> docker.DockerClient:
    """The process's Docker client, created at first use."""
    client = current_app.extensions.get("docker")
    if client is None:
        client = docker.from_env(timeout=120)
        current_app.extensions["docker"] = client
    return client


def directory_config() -> directory.DirectoryConfig:
    cfg = current_app.config
    return directory.DirectoryConfig(url=cfg["LDAP_URL"], base_dn=cfg["LDAP_BASE_DN"],
                                     admin_dn=cfg["LDAP_ADMIN_DN"],
                                     admin_password=cfg["LDAP_ADMIN_PASSWORD"] or "",
                                     timeout=int(cfg["LDAP_TIMEOUT"]))


def images_record() -> Path:
    """The build step's record of the platform images (`python -m devtools images|run`)."""
    path = current_app.config.get("IMAGES_RECORD")
    return Path(path) if path else Path(current_app.instance_path) / "images.json"


def image_ref(name: str) -> str:
    """How a container names the platform image the settings call `name` (SITE_IMAGE, a
    catalogue image…): `<registry>/comgov/<name>@sha256:…` once pushed to REGISTRY_ADDRESS,
    else the recorded image id; without a record, the tag's id if its labels are the
    platform's (pins.UntrustedImage otherwise). A tag moved on the engine later changes
    nothing a container runs."""
    return pins.resolve(docker_client(), name, pins.Record.load(images_record()),
                        registry=current_app.config.get("REGISTRY_ADDRESS"))


def limits(size) -> Limits:
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


def public_url(hostname: str) -> str:
    cfg = current_app.config
    port = int(cfg["PROXY_PORT"])
    scheme = cfg["PUBLIC_URL_SCHEME"]
    suffix = "" if port == (443 if scheme == "https" else 80) else f":{port}"
    return f"{scheme}://{hostname}{suffix}/"


def backups_root() -> Path:
    root = current_app.config.get("BACKUPS_ROOT")
    return Path(root) if root else Path(current_app.instance_path) / "backups"


def write_targz(chunks, dest: Path, stem: str) -> Path:
    """Save a tar stream (as Docker's get_archive yields it) as <stem>-<UTC time>.tar.gz, 0600."""
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = dest / f"{stem}-{stamp}.tar.gz"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        for chunk in chunks:
            gz.write(chunk)
    return path
