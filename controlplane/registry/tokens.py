"""Registry tokens as the control plane issues them: who is asking (the directory, a robot
account or the platform's own account), what they get (`access.grant`), the signed JWT.

Also a registry API client for the control plane itself, whose calls carry tokens minted for
exactly the scope each call needs, and the registry quota of an institution's namespace (its
plan's `registry_mib` against what the registry holds there), checked before a push token.
"""
from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from controlplane.core.extensions import db
from controlplane.core.infra import directory_config
from controlplane.core.models import Institution
from controlplane.quotas import allocation
from controlplane.registry import robots
from controlplane.registry.access import Principal, namespace_of
from provisioners.directory import tree as directory
from provisioners.registry import signing, skopeo
from provisioners.registry.api import RegistryClient, RegistryError

log = logging.getLogger(__name__)
CONTROL_PLANE_SUBJECT = "controlplane"


class BadCredentials(Exception):
    """Unknown user, wrong password or secret, revoked or expired robot, no role."""


class Unavailable(Exception):
    """The directory or the signing key cannot be used right now."""


def registry_root() -> Path:
    root = current_app.config.get("REGISTRY_ROOT")
    return Path(root) if root else Path(current_app.instance_path) / "registry"


def material() -> signing.SigningMaterial:
    cfg = current_app.config
    default = signing.material_paths(registry_root() / "auth")
    return signing.SigningMaterial(
        key_path=Path(cfg["REGISTRY_TOKEN_KEY"]) if cfg.get("REGISTRY_TOKEN_KEY")
        else default.key_path,
        cert_path=Path(cfg["REGISTRY_TOKEN_CERT"]) if cfg.get("REGISTRY_TOKEN_CERT")
        else default.cert_path)


def signer() -> signing.Signer:
    """The loaded key, kept per process (and per key path, so tests may switch)."""
    paths = material()
    cached = current_app.extensions.get("registry_signer")
    if cached is None or cached[0] != paths:
        try:
            cached = (paths, signing.Signer.load(paths))
        except (OSError, ValueError) as exc:
            log.error("event=registry.signing_key_unusable key=%s error=%s", paths.key_path, exc)
            raise Unavailable(f"registry signing key unusable: {exc}") from exc
        current_app.extensions["registry_signer"] = cached
    return cached[1]


def authenticate(username: str, password: str) -> tuple[Principal, object | None]:
    """Who these credentials are, and the robot row when it is a robot account."""
    cfg = current_app.config
    platform_password = cfg.get("REGISTRY_PLATFORM_PASSWORD")
    if username == cfg["REGISTRY_PLATFORM_USER"]:
        if platform_password and hmac.compare_digest(str(password).encode("utf-8"),
                                                     str(platform_password).encode("utf-8")):
            return Principal(kind="platform", name=username), None
        raise BadCredentials()
    if username.startswith(robots.PREFIX):
        robot = robots.verify(username, password)
        if robot is None:
            raise BadCredentials()
        return Principal(kind="robot", name=username,
                         institution=robot.institution.acronym), robot
    try:
        identity = directory.authenticate(directory_config(), username, password)
    except (directory.InvalidCredentials, directory.NoRole) as exc:
        raise BadCredentials() from exc
    except directory.DirectoryError as exc:
        raise Unavailable(str(exc)) from exc
    return Principal(kind="person", name=identity.uid, role=identity.role,
                     institution=identity.institution), None


def issue(subject: str, access: list[dict]) -> signing.Token:
    cfg = current_app.config
    return signer().sign(issuer=cfg["REGISTRY_ISSUER"], audience=cfg["REGISTRY_SERVICE"],
                         subject=subject, access=access, ttl=int(cfg["REGISTRY_TOKEN_TTL"]))


def internal_token(scope: str) -> str:
    """A token for the control plane's own call (catalog, pull, delete): the scope as asked."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return issue(CONTROL_PLANE_SUBJECT,
                 [{"type": kind, "name": name, "actions": actions.split(",")}]).text


def registry_url() -> str:
    cfg = current_app.config
    return cfg.get("REGISTRY_URL") or f"http://{cfg['REGISTRY_ADDRESS']}"


def api_client() -> RegistryClient:
    """The registry's API as the control plane uses it (close it after use)."""
    return RegistryClient(registry_url(), internal_token)


# --------------------------------------------------------------------------- registry quota

@dataclass(frozen=True)
class NamespaceUse:
    namespace: str
    institution: Institution | None  # None: no institution has this namespace (comgov, …)
    used: int  # bytes the registry holds there (blobs and manifests counted once)
    quota: int | None  # bytes the institution's plan allows (None: no institution)

    @property
    def full(self) -> bool:
        return self.quota is not None and self.used >= self.quota


def namespace_institution(namespace: str) -> Institution | None:
    """The institution whose namespace this is (its acronym in lowercase)."""
    if not namespace or namespace_of(namespace) is None:
        return None
    return db.session.scalar(select(Institution)
                             .where(func.lower(Institution.acronym) == namespace.lower()))


def registry_quota(institution: Institution) -> int:
    """Bytes the institution may store in the registry (its plan's `registry_mib`)."""
    return allocation.plan(institution.plan_name).registry_bytes


def _usage_cache() -> dict[str, tuple[float, int]]:
    return current_app.extensions.setdefault("registry_usage", {})


def remember_usage(namespace: str, used: int) -> None:
    _usage_cache()[namespace] = (time.monotonic(), used)


def forget_usage(namespace: str) -> None:
    _usage_cache().pop(namespace, None)


def registry_usage(namespace: str, *, fresh: bool = False) -> int:
    """Bytes stored under `namespace/`, read from the registry (reused for
    REGISTRY_USAGE_CACHE_SECONDS unless `fresh`). RegistryError when it cannot be read."""
    cached = _usage_cache().get(namespace)
    ttl = float(current_app.config["REGISTRY_USAGE_CACHE_SECONDS"])
    if cached is not None and not fresh and time.monotonic() - cached[0] < ttl:
        return cached[1]
    with api_client() as client:
        used = skopeo.stored_bytes(skopeo.namespace_images(client, namespace, created=False))
    remember_usage(namespace, used)
    return used


def namespace_use(namespace: str, *, fresh: bool = False) -> NamespaceUse:
    institution = namespace_institution(namespace)
    quota = registry_quota(institution) if institution is not None else None
    return NamespaceUse(namespace, institution, registry_usage(namespace, fresh=fresh), quota)


def full_namespace(namespaces: list[str]) -> NamespaceUse | None:
    """The first of these institution namespaces that has reached its registry quota (a push
    token is refused for it). A registry that cannot be read refuses nothing here: the push
    would fail on the registry itself."""
    for namespace in namespaces:
        if namespace_institution(namespace) is None:
            continue
        try:
            use = namespace_use(namespace)
        except RegistryError as exc:
            log.warning("event=registry.quota_unknown namespace=%s error=%s", namespace, exc)
            continue
        if use.full:
            return use
    return None
