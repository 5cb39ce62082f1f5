"""Naming rules: host names under the institution's domain, service and mailbox names, images."""
from __future__ import annotations

import re
from typing import Mapping, Protocol


class _NameRule(Protocol):
    """What naming reads of a policies.model.NameRule."""

    @property
    def pattern(self) -> re.Pattern: ...
    @property
    def max_length(self) -> int: ...
    @property
    def reserved(self) -> frozenset[str]: ...


class _KindEntry(Protocol):
    """What naming reads of a policies.model.KindEntry."""

    @property
    def versions(self) -> tuple[str, ...]: ...
    @property
    def registries(self) -> tuple[str, ...]: ...
    @property
    def images(self) -> tuple[str, ...]: ...
    @property
    def require_tag(self) -> bool: ...


class NamingRules(Protocol):
    """What naming reads of a Policies; policies.model imports this module, never the reverse."""

    @property
    def naming(self) -> Mapping[str, _NameRule]: ...
    @property
    def catalogue(self) -> Mapping[str, _KindEntry]: ...

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")
# Docker image references (lower-case registry host, path components, tag, digest).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]{1,5})?"
IMAGE_RE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
                      r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")
REGISTRY_PREFIX_RE = re.compile(rf"{_DOMAIN}/(?:{_COMPONENT}/)*")


def hostname_problem(hostname: str, domain: str) -> str | None:
    """Why `hostname` cannot be a site of the institution owning `domain`, or None if it can.

    Returns a short code: 'syntax' or 'outside'. The domain itself is allowed.
    """
    if len(hostname) > 253 or not HOSTNAME_RE.match(hostname):
        return "syntax"
    domain = domain.lower().strip(".")
    if hostname != domain and not hostname.endswith("." + domain):
        return "outside"
    return None


def name_problem(policies: NamingRules, what: str, name: str) -> str | None:
    """Why `name` cannot be a `what` (database, mailbox, application) name, or None.

    Codes: 'syntax', 'too_long', 'reserved'. Database names also serve for database users.
    """
    rule = policies.naming[what]
    if not isinstance(name, str) or not name:
        return "syntax"
    if len(name) > rule.max_length:
        return "too_long"
    if not rule.pattern.fullmatch(name):
        return "syntax"
    if name.lower() in rule.reserved:
        return "reserved"
    return None


def _tag(image: str) -> str | None:
    if "@" in image:
        return "@digest"
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def image_problem(policies: NamingRules, image: str, kind: str = "application") -> str | None:
    """Why an institution may not run `image`, or None.

    Codes: 'syntax', 'untagged' (no tag, or ":latest", when tags are required),
    'not_allowed' (neither under an allowed registry prefix nor listed).
    """
    entry = policies.catalogue[kind]
    if not isinstance(image, str) or len(image) > 255 or not IMAGE_RE.fullmatch(image):
        return "syntax"
    if entry.require_tag and _tag(image) in (None, "latest"):
        return "untagged"
    if image in entry.images or any(image.startswith(prefix) for prefix in entry.registries):
        return None
    return "not_allowed"


def version_problem(policies: NamingRules, kind: str, version: str | None) -> str | None:
    """'unknown' when `version` is not offered for `kind` (None = the default version)."""
    entry = policies.catalogue[kind]
    if version is None or version in entry.versions:
        return None
    return "unknown"
