"""Who may do what in the image registry: a pure decision over plain data (no Flask, no
database, no network), so every rule has its unit test.

The rules:

- an institution's focal point, or one of its robot accounts, may pull and push
  `<acronym in lowercase>/…` (at least two path components) and nothing of another institution;
- operators and the platform's own account may pull and push `comgov/…`;
- every authenticated person (focal point, operator, auditor) may pull `comgov/…`;
- nothing else: no other resource type (not even the catalog), no `delete`, no `*`.

A requested scope that is not granted is left out of the token's `access` (the token
specification says so): the registry then refuses the operation itself.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from provisioners.registry.api import MAX_REPOSITORY, REPOSITORY_RE

PLATFORM_NAMESPACE = "comgov"
PULL, PUSH = "pull", "push"
KINDS = ("person", "robot", "platform")
MAX_SCOPES = 32


@dataclass(frozen=True)
class Principal:
    """Who asks for a token, as authenticated."""

    kind: str  # person | robot | platform
    name: str  # the user name given to `docker login`
    role: str | None = None  # persons: focal_point | operator | auditor
    institution: str | None = None  # acronym (focal points and robots)


@dataclass(frozen=True)
class Scope:
    """One requested scope: `repository:minisante/portail:pull,push`."""

    type: str
    name: str
    actions: tuple[str, ...]


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Each `scope` parameter may hold several scopes separated by spaces; malformed ones are
    dropped (they cannot be granted anyway)."""
    found: list[Scope] = []
    for value in values:
        for item in (value or "").split():
            if len(found) >= MAX_SCOPES:
                return found
            kind, sep, rest = item.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not (sep and sep2 and kind and name):
                continue
            found.append(Scope(kind, name, tuple(a for a in actions.split(",") if a)))
    return found


def namespace_of(institution: str | None) -> str | None:
    """An institution's namespace: its acronym in lowercase (never the platform's own)."""
    if not institution:
        return None
    namespace = institution.lower()
    return None if namespace == PLATFORM_NAMESPACE else namespace


def allowed_actions(principal: Principal, repository: str) -> frozenset[str]:
    """What `principal` may do on `repository` (empty when the name is not valid)."""
    if (len(repository) > MAX_REPOSITORY or not REPOSITORY_RE.fullmatch(repository)
            or "/" not in repository):
        return frozenset()
    namespace = repository.split("/", 1)[0]
    if principal.kind not in KINDS:
        return frozenset()
    if namespace == PLATFORM_NAMESPACE:
        if principal.kind == "platform":
            return frozenset({PULL, PUSH})
        if principal.kind == "person" and principal.role == "operator":
            return frozenset({PULL, PUSH})
        if principal.kind == "person" and principal.role in ("focal_point", "auditor"):
            return frozenset({PULL})
        return frozenset()
    own = namespace_of(principal.institution)
    if own is not None and namespace == own and (
            principal.kind == "robot"
            or (principal.kind == "person" and principal.role == "focal_point")):
        return frozenset({PULL, PUSH})
    return frozenset()


def grant(principal: Principal, scopes: Iterable[Scope]) -> list[dict]:
    """The token's `access` claim: for each requested repository, the requested actions that
    are allowed (repositories with none are left out), in the order asked."""
    merged: dict[str, list[str]] = {}
    for scope in scopes:
        if scope.type != "repository":
            continue
        allowed = allowed_actions(principal, scope.name)
        actions = merged.setdefault(scope.name, [])
        for action in scope.actions:
            if action in allowed and action not in actions:
                actions.append(action)
    return [{"type": "repository", "name": name, "actions": actions}
            for name, actions in merged.items() if actions]


def pushed_namespaces(access: Iterable[dict]) -> list[str]:
    """The institutions' namespaces a token's `access` lets push into (the platform's aside):
    those whose registry quota the token endpoint checks."""
    found: list[str] = []
    for entry in access:
        if entry.get("type") != "repository" or PUSH not in (entry.get("actions") or ()):
            continue
        namespace = str(entry.get("name") or "").split("/", 1)[0]
        if namespace and namespace != PLATFORM_NAMESPACE and namespace not in found:
            found.append(namespace)
    return found
