"""What every kind of service is, and the optional capabilities a kind declares.

A kind says how it is requested (form, checks), provisioned, stopped, started and removed, how
it is probed and shown. Optional capabilities are small abstract classes a kind inherits, so
code asks `isinstance(kind, BackedUp)` of a declaration instead of guessing with hasattr:

    class Database(Kind, BackedUp, Restorable, WithCredentials): ...
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from flask import current_app
from flask_wtf import FlaskForm

from controlplane.core import infra
from controlplane.core.models import Institution, Service
from provisioners import probes


class Kind(ABC):
    """Base for a kind of hosted service; each kind lives in its own package next to this one."""

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

    @abstractmethod
    def clean(self, data: dict[str, Any], institution: Institution) -> dict[str, Any]:
        """Validate submitted data; return {hostname?, name?, size, params}; LifecycleError."""

    def size(self, name: str):
        return current_app.extensions["policies"].size(self.name, name)

    def display_name(self, svc: Service) -> str:
        return svc.hostname or svc.name or f"#{svc.id}"

    # --- in the worker (convergent) -----------------------------------------------------
    @abstractmethod
    def provision(self, svc: Service) -> None: ...

    @abstractmethod
    def stop(self, svc: Service) -> None: ...

    @abstractmethod
    def start(self, svc: Service) -> None: ...

    @abstractmethod
    def remove(self, svc: Service) -> None: ...

    def url(self, svc: Service) -> str | None:
        """Where visitors reach the service, if they do."""
        return None

    def container_name(self, svc: Service) -> str | None:
        """The service's container (None: the kind runs none of its own)."""
        return None

    def probe(self, svc: Service) -> tuple[bool, str]:
        """Container state (and Docker's health check); kinds add a protocol probe."""
        name = self.container_name(svc)
        if name is None:
            return True, "no container"
        state, docker_health = probes.container_state(infra.docker_client(), name)
        if state != "running":
            return False, f"container {state}"
        if docker_health == "unhealthy":
            return False, "health check failing"
        return True, f"container {state}" + (f", {docker_health}" if docker_health else "")


# --- optional capabilities -----------------------------------------------------------------
class BackedUp(ABC):
    """The kind keeps data worth a backup (scheduled, on demand, and final on delete)."""

    @abstractmethod
    def backup(self, svc: Service, dest: Path) -> Path | None:
        """Write a backup file under `dest`; return its path (None: nothing to keep)."""


class Restorable(ABC):
    """A backup can be put back in place of the service's current data."""

    @abstractmethod
    def restore(self, svc: Service, path: Path) -> None: ...


class Deployable(ABC):
    """People upload content (an archive) that replaces the service's files."""

    @abstractmethod
    def deploy(self, svc: Service, clean_tar: Path) -> None:
        """Replace the service's files with a checked, clean tar (streamed, never held whole)."""


class WithCredentials(ABC):
    """The service has a password of its own: connection settings to reveal, and rotation."""

    @abstractmethod
    def connection(self, svc: Service, password: str) -> dict: ...

    @abstractmethod
    def rotate(self, svc: Service) -> None: ...
