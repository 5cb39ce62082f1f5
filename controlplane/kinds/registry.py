"""The catalogue of kinds: one instance of each, looked up by name.

`get` is for names that must exist (a stored service's kind) and raises UnknownKind otherwise;
`find` is for names that come from outside (a URL) and may answer None.
"""
from __future__ import annotations

from controlplane.core.models import Service
from controlplane.kinds.application.kind import Application
from controlplane.kinds.base import Kind
from controlplane.kinds.database.kind import DATABASES
from controlplane.kinds.mail.kind import MailDomain
from controlplane.kinds.website.kind import Website


class UnknownKind(LookupError):
    """A stored service names a kind this version does not have."""


_KINDS: dict[str, Kind] = {kind.name: kind for kind in (Website(), Application(), *DATABASES,
                                                         MailDomain())}


def get(name: str) -> Kind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None


def find(name: str) -> Kind | None:
    return _KINDS.get(name)


def all_kinds() -> list[Kind]:
    return list(_KINDS.values())


def site_url(svc: Service) -> str | None:
    """The address visitors use for the service, if it has one."""
    kind = find(svc.kind)
    return kind.url(svc) if kind else None
