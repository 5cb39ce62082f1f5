"""Databases: one PostgreSQL or MariaDB server per service, credentials kept encrypted."""
from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

import policies as pol
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Service
from controlplane.core.transitions import LifecycleError
from controlplane.kinds.base import BackedUp, Kind, Restorable, WithCredentials
from controlplane.kinds.checks import check_size, size_choices
from controlplane.kinds.database.forms import DatabaseRequestForm
from controlplane.services import credentials
from controlplane.services.ports import allocate_port
from provisioners import probes
from provisioners.application.container import database_env
from provisioners.database import backup as database_backup
from provisioners.database import server as database
from provisioners.database.server import DatabaseSpec

DATABASE_KINDS = ("postgresql", "mariadb")


class Database(Kind, BackedUp, Restorable, WithCredentials):
    form_class = DatabaseRequestForm
    detail_template = "kinds/database/detail.html"
    extra_template = "kinds/database/extra.html"

    def __init__(self, name: str, label, description):
        self.name, self.label, self.description = name, label, description

    def prepare_form(self, form, institution):
        form.size.choices = size_choices(self.name)

    def clean(self, data, institution):
        name = (data.get("name") or "").strip().lower()
        problem = pol.name_problem(current_app.extensions["policies"], "database", name)
        if problem:
            raise LifecycleError(_l("“%(name)s” cannot be used as a database name (%(problem)s)"
                                    ": 3 to 31 lowercase letters, digits or _, starting with a "
                                    "letter, and not a reserved name.", name=name,
                                    problem=problem), field="name")
        taken = db.session.scalar(select(Service.id).where(
            Service.institution_id == institution.id, Service.kind == self.name,
            Service.name == name, Service.status != "deleted"))
        if taken:
            raise LifecycleError(_l("Your institution already has a database named "
                                    "%(name)s.", name=name), field="name")
        version = current_app.extensions["policies"].catalogue[self.name].default_version
        return {"name": name, "size": check_size(self.name, data.get("size")),
                "params": {"username": name, "version": version}}

    # --- worker side -------------------------------------------------------------------
    def spec(self, svc: Service) -> DatabaseSpec:
        size = self.size(svc.size)
        root = infra.volumes_root()
        return DatabaseSpec(
            service_id=svc.id, institution_id=svc.institution_id,
            institution=svc.institution.acronym, engine=self.name, db_name=svc.name,
            username=svc.params.get("username", svc.name), limits=infra.limits(size),
            image=infra.image_ref(current_app.extensions["policies"].catalogue[self.name].image),
            host_port=int(svc.params.get("host_port") or 0),
            publish_ip=current_app.config["DB_PUBLISH_IP"],
            disk_bytes=size.disk_bytes if root else 0, volumes_root=root, **infra.common())

    def _allocate_port(self, svc: Service) -> int:
        """A published port from DB_PORT_RANGE, unique among live databases."""
        return allocate_port(svc, "host_port", DATABASE_KINDS,
                                   current_app.config["DB_PORT_RANGE"],
                                   current_app.config["DB_PUBLISH_IP"], "databases")

    def provision(self, svc):
        self._allocate_port(svc)
        password = credentials.get(svc, "password")
        if password is None:
            password = credentials.generate_password()
            credentials.put(svc, "password", password)
            db.session.commit()
        database.ensure_database(infra.docker_client(), self.spec(svc), password)

    def rotate(self, svc: Service) -> None:
        """New password: staged first, so a retry after a crash converges on the same one."""
        staged = credentials.get(svc, "password_next")
        if staged is None:
            staged = credentials.generate_password()
            credentials.put(svc, "password_next", staged)
            db.session.commit()
        database.set_password(infra.docker_client(), self.spec(svc), staged)
        credentials.put(svc, "password", staged)
        credentials.forget(svc, "password_next")

    def stop(self, svc):
        database.stop_database(infra.docker_client(), self.spec(svc))

    def start(self, svc):
        database.start_database(infra.docker_client(), self.spec(svc))

    def remove(self, svc):
        database.remove_database(infra.docker_client(), self.spec(svc))

    def backup(self, svc, dest):
        return database_backup.backup(infra.docker_client(), self.spec(svc), dest)

    def restore(self, svc, path):
        database_backup.restore(infra.docker_client(), self.spec(svc), path)

    def connection(self, svc: Service, password: str) -> dict:
        host = current_app.config.get("DB_PUBLIC_HOST") or current_app.config["DB_PUBLISH_IP"]
        port = int(svc.params.get("host_port") or 0)
        env = database_env(self.name, host, port, svc.name, svc.params.get("username", svc.name),
                           password)
        return {"host": host, "port": port, "database": svc.name,
                "user": svc.params.get("username", svc.name), "password": password,
                "url": env["DATABASE_URL"]}

    def container_name(self, svc):
        return database.server_container_name(infra.common()["prefix"], svc.id)

    def probe(self, svc):
        ok, detail = super().probe(svc)
        port = int(svc.params.get("host_port") or 0)
        if not ok or not port:
            return ok, detail
        result = probes.tcp_probe(current_app.config["DB_PUBLISH_IP"], port)
        return result.ok, f"TCP {result.detail} ({result.latency_ms:.0f} ms)"


DATABASES = (
    Database("postgresql", _l("PostgreSQL database"),
             _l("A PostgreSQL 15 server of your own, reachable from your institution’s "
                "servers; daily backups, restore on demand.")),
    Database("mariadb", _l("MariaDB database"),
             _l("A MariaDB server of your own, reachable from your institution’s servers; "
                "daily backups, restore on demand.")),
)
assert tuple(d.name for d in DATABASES) == DATABASE_KINDS
