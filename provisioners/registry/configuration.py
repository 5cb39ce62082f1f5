"""The registry's configuration file (distribution 2.8 `config.yml`).

Filesystem storage, deletes enabled (images are removed by digest through the API), one HTTP
address, and token authentication: the registry sends clients to `realm` (the control plane's
`/v2/token`) and trusts only tokens whose `iss` is `issuer`, whose `aud` is `service` and whose
signature chains to `rootcertbundle`.

Notifications (optional): the registry posts its events (distribution's standard
`notifications.endpoints`) to the control plane's `/registry/events` with a shared secret in
`Authorization: Bearer <secret>`; pulls and blob events are not sent (`ignore`), so only
manifest pushes and deletes reach it.
"""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

CONFIG_FILE = "config.yml"
HTTP_SECRET_FILE = "http.secret"
_DURATION_RE = re.compile(r"[0-9]{1,6}(ms|s|m)")
# Events the control plane has no use for: pulls, and blobs (layers, configs).
IGNORED_ACTIONS = ("pull",)
IGNORED_MEDIA_TYPES = ("application/octet-stream",
                       "application/vnd.docker.container.image.v1+json",
                       "application/vnd.oci.image.config.v1+json")


@dataclass(frozen=True)
class NotificationEndpoint:
    """Where the registry posts its events, and how it retries (distribution's endpoint)."""

    url: str  # the control plane's /registry/events
    secret: str  # sent as `Authorization: Bearer <secret>`
    timeout: str = "5s"  # per delivery
    threshold: int = 5  # failures before the registry backs off
    backoff: str = "10s"  # wait after `threshold` failures before trying again
    name: str = "controlplane"


@dataclass(frozen=True)
class RegistrySpec:
    storage_dir: Path  # rootdirectory of the filesystem driver
    addr: str  # host:port the registry listens on
    realm: str  # URL of the control plane's token endpoint
    service: str  # the tokens' audience
    issuer: str  # the tokens' issuer
    rootcertbundle: Path  # the certificate the tokens are signed under
    http_secret: str  # signs upload state (must be the same on every replica)
    log_level: str = "info"
    notifications: tuple[NotificationEndpoint, ...] = field(default=())


def _check(spec: RegistrySpec) -> None:
    host, _, port = spec.addr.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"registry address must be host:port, got {spec.addr!r}")
    if urlsplit(spec.realm).scheme not in ("http", "https") or not urlsplit(spec.realm).netloc:
        raise ValueError(f"token realm must be an http(s) URL, got {spec.realm!r}")
    for what, value in (("service", spec.service), ("issuer", spec.issuer)):
        if not value or any(ch in value for ch in '"\\\n\r'):
            raise ValueError(f"unsupported {what} {value!r}")
    if spec.log_level not in ("error", "warn", "info", "debug"):
        raise ValueError(f"unknown log level {spec.log_level!r}")
    for endpoint in spec.notifications:
        _check_endpoint(endpoint)


def _check_endpoint(endpoint: NotificationEndpoint) -> None:
    parts = urlsplit(endpoint.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"notification URL must be an http(s) URL, got {endpoint.url!r}")
    if not endpoint.secret or len(endpoint.secret) < 16 \
            or any(ch.isspace() or not ch.isprintable() for ch in endpoint.secret):
        raise ValueError("the notification secret must be at least 16 printable characters "
                         "without spaces")
    for what, value in (("timeout", endpoint.timeout), ("backoff", endpoint.backoff)):
        if not isinstance(value, str) or not _DURATION_RE.fullmatch(value):
            raise ValueError(f"notification {what} must be a duration such as 5s, got {value!r}")
    if isinstance(endpoint.threshold, bool) or not isinstance(endpoint.threshold, int) \
            or not 1 <= endpoint.threshold <= 100:
        raise ValueError(f"notification threshold must be 1-100, got {endpoint.threshold!r}")
    if not re.fullmatch(r"[a-z0-9-]{1,40}", endpoint.name or ""):
        raise ValueError(f"invalid notification endpoint name {endpoint.name!r}")


def _endpoint(endpoint: NotificationEndpoint) -> dict:
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "headers": {"Authorization": [f"Bearer {endpoint.secret}"]},
        "timeout": endpoint.timeout,
        "threshold": endpoint.threshold,
        "backoff": endpoint.backoff,
        "ignore": {"mediatypes": list(IGNORED_MEDIA_TYPES), "actions": list(IGNORED_ACTIONS)},
    }


def render(spec: RegistrySpec) -> str:
    """The YAML text (values are dumped by PyYAML, never pasted into a template)."""
    _check(spec)
    config = {
        "version": 0.1,
        "log": {"level": spec.log_level, "formatter": "text",
                "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(spec.storage_dir)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": True, "age": "168h",
                                              "interval": "24h", "dryrun": False}},
        },
        "http": {
            "addr": spec.addr,
            "secret": spec.http_secret,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "auth": {
            "token": {
                "realm": spec.realm,
                "service": spec.service,
                "issuer": spec.issuer,
                "rootcertbundle": str(spec.rootcertbundle),
            },
        },
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    if spec.notifications:
        config["notifications"] = {"endpoints": [_endpoint(e) for e in spec.notifications]}
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def ensure_http_secret(workdir: Path) -> str:
    """The registry's HTTP secret, made once (0600) so uploads survive a restart."""
    path = Path(workdir) / HTTP_SECRET_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    return value


def write(path: Path, text: str) -> Path:
    """Write the configuration (it holds the HTTP secret: 0600)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return path
