"""Application images kept in the data centre's own registry: references, digests, pulls.

An image named `<REGISTRY_ADDRESS>/<repository>:<tag>` lives in the registry the control plane
runs: its API tells which digest a tag points to, and the engine pulls it with a token the
control plane mints for exactly that repository's pull scope (institutions' repositories are
not readable with the platform's own account). Usage::

    image = in_registry(svc.params["image"])     # None: not an image of our registry
    digest = resolve(image, image.tag)           # sha256:…
    ref = pull(client, image, digest)            # 127.0.0.1:5001/minisante/web@sha256:…
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app

from controlplane.registry import tokens
from provisioners.application import container as application
from provisioners.registry.api import (
    DIGEST_RE,
    TAG_RE,
    RegistryClient,
    RegistryError,
    check_repository,
)

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 3.0  # seconds per registry call made while a page is rendered


@dataclass(frozen=True)
class RegistryImage:
    address: str  # REGISTRY_ADDRESS: registry.dc.gov.bi
    repository: str  # in the registry: minisante/web
    tag: str | None  # None when the reference names a digest

    @property
    def name(self) -> str:
        """What the engine pulls: the repository with the registry's address."""
        return f"{self.address}/{self.repository}"

    def at(self, digest: str) -> str:
        return f"{self.name}@{digest}"


def in_registry(image: str | None) -> RegistryImage | None:
    """The image as a repository of the platform's registry, or None if it is not one."""
    address = current_app.config["REGISTRY_ADDRESS"]
    if not isinstance(image, str) or not image.startswith(address + "/"):
        return None
    rest = image[len(address) + 1:]
    if "@" in rest:
        repository, _, digest = rest.partition("@")
        tag = None
        if not DIGEST_RE.fullmatch(digest):
            return None
    else:
        repository, sep, tag = rest.rpartition(":")
        if not sep or "/" in tag:
            repository, tag = rest, None
        if tag is not None and not TAG_RE.fullmatch(tag):
            return None
    try:
        check_repository(repository)
    except ValueError:
        return None
    return RegistryImage(address=address, repository=repository, tag=tag)


def client(timeout: float | None = None) -> RegistryClient:
    """The registry's API with tokens minted per call (close it after use)."""
    if timeout is None:
        return tokens.api_client()
    return RegistryClient(tokens.registry_url(), tokens.internal_token, timeout=timeout)


def resolve(image: RegistryImage, reference: str) -> str:
    """The digest a tag (or a digest) names in the registry now; RegistryError if none."""
    with client() as api:
        return api.manifest(image.repository, reference).digest


def available(image: RegistryImage, digests: list[str]) -> set[str]:
    """Which of these digests the registry still holds (a failing registry holds none)."""
    found: set[str] = set()
    try:
        with client(CHECK_TIMEOUT) as api:
            for digest in digests:
                try:
                    api.manifest(image.repository, digest)
                except RegistryError as exc:
                    if exc.status != 404:
                        raise
                else:
                    found.add(digest)
    except (RegistryError, ValueError, tokens.Unavailable) as exc:
        log.warning("event=registry.check_failed repository=%s error=%s", image.repository, exc)
        return set()
    return found


def pull(docker_client, image: RegistryImage, reference: str) -> str:
    """Pull the image at a tag or digest onto the engine with a pull token for its repository;
    returns the reference containers are created from."""
    token = tokens.internal_token(f"repository:{image.repository}:pull")
    return application.pull_image(docker_client, image.name, reference, token)
