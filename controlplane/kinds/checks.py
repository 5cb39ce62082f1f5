"""Checks every kind's request form shares: host names under the institution's domain, sizes."""
from __future__ import annotations

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import REQUEST_OPEN_STATES, Institution, Request, Service
from controlplane.core.transitions import LifecycleError


def size_choices(kind: str) -> list[tuple[str, str]]:
    sizes = current_app.extensions["policies"].sizes[kind]
    return [(name, _("%(name)s — %(cpu)s CPU, %(mem)s MiB memory, %(disk)s MiB disk",
                     name=name, cpu=s.cpu, mem=s.memory_mib, disk=s.disk_mib))
            for name, s in sizes.items()]


def hostname_taken(hostname: str) -> bool:
    """Used by a live service or asked for by an open request."""
    live = db.session.scalar(select(Service.id).where(
        Service.hostname == hostname, Service.status != "deleted").limit(1))
    pending = db.session.scalar(select(Request.id).where(
        Request.hostname == hostname, Request.status.in_(REQUEST_OPEN_STATES)).limit(1))
    return live is not None or pending is not None


def check_hostname(hostname: str, institution: Institution) -> str:
    """Normalise and validate a host name under the institution's domain (LifecycleError)."""
    hostname = (hostname or "").strip().lower().rstrip(".")
    # The loaded policies also know the labels kept for the platform (mail.<domain>, …).
    problem = current_app.extensions["policies"].hostname_problem(hostname, institution.domain)
    if problem == "syntax":
        raise LifecycleError(_l("“%(host)s” is not a valid host name: use letters, digits and "
                                "hyphens separated by dots, e.g. www.%(domain)s.",
                                host=hostname, domain=institution.domain), field="hostname")
    if problem == "reserved":
        raise LifecycleError(_l("%(host)s is kept for the platform’s own services (mail, "
                                "webmail, …); choose another name.", host=hostname),
                             field="hostname")
    if problem == "outside":
        raise LifecycleError(_l("The host name must be under your institution's domain "
                                "%(domain)s, e.g. www.%(domain)s.", domain=institution.domain),
                             field="hostname")
    if hostname_taken(hostname):
        raise LifecycleError(_l("%(host)s is already used or requested; choose another name.",
                                host=hostname), field="hostname")
    return hostname


def check_size(kind: str, size: str) -> str:
    names = current_app.extensions["policies"].size_names(kind)
    if size not in names:
        raise LifecycleError(_l("Unknown size “%(size)s”; choose one of %(sizes)s.", size=size,
                                sizes=", ".join(names)), field="size")
    return size
