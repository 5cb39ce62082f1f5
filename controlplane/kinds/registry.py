"""The catalogue of service kinds: each kind says how it is requested, provisioned and shown."""
from __future__ import annotations

from typing import Any

from flask import current_app
from flask_wtf import FlaskForm

from controlplane.core.models import Institution, Service


class Kind:
    """Base for a kind of hosted service; subclasses live next to this module."""

    name: str = ""
    label: Any = ""
    description: Any = ""
    form_class: type[FlaskForm]
    counts_against_quota = True  # False: no container; no quota decision (one operator)
    actions: set[str] | None = None  # None: every lifecycle action; else only these
    requestable = True
    detail_template: str | None = None  # facts (dt/dd) included in the service page
    extra_template: str | None = None  # actions and tables shown below the facts

    # --- request time (web request; no Docker or LDAP calls) ----------------------------
    def prepare_form(self, form: FlaskForm, institution: Institution) -> None:
        """Fill choices and defaults."""

    def clean(self, data: dict[str, Any], institution: Institution) -> dict[str, Any]:
        """Validate submitted data; return {hostname?, name?, size, params}; LifecycleError."""
        raise NotImplementedError

    def size(self, name: str):
        return current_app.extensions["policies"].size(self.name, name)

    def display_name(self, svc: Service) -> str:
        return svc.hostname or svc.name or f"#{svc.id}"

    # --- in the worker (convergent) -----------------------------------------------------
    def provision(self, svc: Service) -> None:
        raise NotImplementedError

    def stop(self, svc: Service) -> None:
        raise NotImplementedError

    def start(self, svc: Service) -> None:
        raise NotImplementedError

    def remove(self, svc: Service) -> None:
        raise NotImplementedError

    def url(self, svc: Service) -> str | None:
        return None

    def container_name(self, svc: Service) -> str | None:
        return None

    def probe(self, svc: Service) -> tuple[bool, str]:
        """Container state (and Docker's health check); kinds add a protocol probe."""
        from provisioners import probes as health

        from controlplane.core import infra

        name = self.container_name(svc)
        if name is None:
            return True, "no container"
        state, docker_health = health.container_state(infra.docker_client(), name)
        if state != "running":
            return False, f"container {state}"
        if docker_health == "unhealthy":
            return False, "health check failing"
        return True, f"container {state}" + (f", {docker_health}" if docker_health else "")


_REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    _REGISTRY[kind.name] = kind
    return kind


def get(name: str) -> Kind | None:
    return _REGISTRY.get(name)


def all_kinds() -> list[Kind]:
    return list(_REGISTRY.values())


def load() -> None:
    """Import the kind modules (they register themselves)."""
    from controlplane.kinds.application import kind as application  # noqa: F401
    from controlplane.kinds.database import kind as database
    from controlplane.kinds.mail import kind as mail
    from controlplane.kinds.website import kind as website
