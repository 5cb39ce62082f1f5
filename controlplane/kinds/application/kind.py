"""Institutions' own applications: an allowed image, one HTTP port behind the front proxy.

An application may follow its tag (`params.follow_tag`): it then runs the digest the tag named
when it was provisioned (`params.digest`, `params.deployed_image`), and each push of that tag
is deployed next to it (`deployments.py`); `params.deployment` is the marker of the container
running now (None: the first one, `{prefix}-app-<id>`).
"""
from __future__ import annotations

import dataclasses
import json

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

import policies as pol
from controlplane.audit import trail as audit
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Deployment, Service, utcnow
from controlplane.core.transitions import LifecycleError
from controlplane.kinds.application import registry_images
from controlplane.kinds.application.forms import ApplicationRequestForm
from controlplane.kinds.base import Kind
from controlplane.kinds.checks import check_hostname, check_size, size_choices
from controlplane.kinds.database.kind import DATABASE_KINDS
from controlplane.proxy.front import probe_through_proxy, proxy_spec
from controlplane.services import credentials
from provisioners.application import container as application
from provisioners.application.container import (
    DATABASE_PORTS,
    database_env,
    database_host,
    validate_environment,
)


def parse_environment(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "=" not in line:
            raise LifecycleError(_l("Line %(n)s of the environment is not NAME=value.", n=number),
                                 field="environment")
        key, value = line.split("=", 1)
        env[key.strip()] = value
    try:
        return validate_environment(env)
    except ValueError as exc:
        raise LifecycleError(_l("Environment: %(error)s", error=str(exc)),
                             field="environment") from None


def own_databases(institution_id: int) -> list[Service]:
    return list(db.session.scalars(select(Service).where(
        Service.institution_id == institution_id, Service.kind.in_(DATABASE_KINDS),
        Service.status != "deleted").order_by(Service.id)))


def image_namespace(institution) -> list[str]:
    """Registry prefixes this institution may use: its own folder in the platform's registry
    (REGISTRY_ADDRESS, where pushes and uploads land), then under each registry the catalogue
    lists."""
    policies = current_app.extensions["policies"]
    registries = [f"{current_app.config['REGISTRY_ADDRESS']}/",
                  *policies.catalogue["application"].registries]
    return list(dict.fromkeys(f"{r}{institution.acronym.lower()}/" for r in registries))


class Application(Kind):
    name = "application"
    label = _l("application")
    description = _l("Your institution’s own application, from an image of the data centre’s "
                     "registry (or an image archive you upload), served on one HTTP port "
                     "behind the front proxy.")
    form_class = ApplicationRequestForm
    detail_template = "kinds/application/detail.html"

    def prepare_form(self, form, institution):
        form.size.choices = size_choices(self.name)
        form.database.choices = [("", "—")] + [
            (str(s.id), f"{s.name} ({s.kind})") for s in own_databases(institution.id)]
        if not form.is_submitted():
            form.hostname.data = form.hostname.data or f"app.{institution.domain}"
            form.image.data = form.image.data or f"{image_namespace(institution)[0]}app:1.0"
        form.hostname.description = _l("Must be under %(domain)s.", domain=institution.domain)
        form.image.description = _l("Allowed: %(prefixes)s…, with a version tag (not latest).",
                                    prefixes=", ".join(image_namespace(institution)))

    def clean(self, data, institution):
        policies = current_app.extensions["policies"]
        name = (data.get("name") or "").strip().lower()
        problem = pol.name_problem(policies, "application", name)
        if problem:
            raise LifecycleError(_l("“%(name)s” cannot be used as an application name "
                                    "(%(problem)s): use lowercase letters, digits and hyphens.",
                                    name=name, problem=problem), field="name")
        image = (data.get("image") or "").strip()
        problem = pol.image_problem(policies, image)
        own = any(image.startswith(p) for p in image_namespace(institution))
        exact = image in policies.catalogue["application"].images
        # The institution's own folder of the platform's registry needs no catalogue entry.
        if (problem and problem != "not_allowed") or not (own or exact):
            raise LifecycleError(_l("Image “%(image)s” is not allowed: use %(prefixes)s<name>:"
                                    "<version>, or an image the catalogue lists.", image=image,
                                    prefixes=" / ".join(image_namespace(institution))),
                                 field="image")
        port = data.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise LifecycleError(_l("The port must be a number from 1 to 65535."), field="port")
        health = (data.get("health_path") or "").strip() or None
        if health and (not health.startswith("/") or any(c in health for c in " \"'\\\n")):
            raise LifecycleError(_l("The health check path must start with / and contain no "
                                    "spaces or quotes."), field="health_path")
        volume = (data.get("volume_path") or "").strip() or None
        if volume and (not volume.startswith("/") or ".." in volume or volume in ("/", "/etc",
                                                                                   "/proc")):
            raise LifecycleError(_l("The volume mount point must be an absolute path such as "
                                    "/data."), field="volume_path")
        env = parse_environment(data.get("environment") or "")
        database = data.get("database") or None
        if database:
            ids = {str(s.id): s for s in own_databases(institution.id)}
            if database not in ids:
                raise LifecycleError(_l("Choose one of your institution’s databases."),
                                     field="database")
            database = int(database)
        follow = bool(data.get("follow_tag"))
        followed = registry_images.in_registry(image)
        if follow and (followed is None or followed.tag is None):
            raise LifecycleError(_l("Only a tagged image of the data centre’s registry "
                                    "(%(registry)s/…) can be followed.",
                                    registry=current_app.config["REGISTRY_ADDRESS"]),
                                 field="follow_tag")
        return {"name": name, "hostname": check_hostname(data.get("hostname"), institution),
                "size": check_size(self.name, data.get("size")),
                "params": {"image": image, "port": port, "health_path": health,
                           "volume_path": volume, "database_id": database,
                           "environment": credentials.encrypt(json.dumps(env)),
                           "follow_tag": follow}}

    def environment(self, svc: Service) -> dict[str, str]:
        token = (svc.params or {}).get("environment")
        env = json.loads(credentials.decrypt(token)) if token else {}
        db_id = (svc.params or {}).get("database_id")
        if db_id:
            bound = db.session.get(Service, db_id)
            if bound is None or bound.status == "deleted":
                raise RuntimeError(f"bound database #{db_id} no longer exists")
            password = credentials.get(bound, "password")
            if password is None:
                raise RuntimeError(f"bound database #{db_id} has no credentials yet")
            engine = bound.kind
            env.update(database_env(engine, database_host(infra.common()["prefix"], bound.id),
                                    DATABASE_PORTS[engine], bound.name,
                                    bound.params.get("username", bound.name), password))
        return env

    def spec(self, svc: Service) -> application.ApplicationSpec:
        params = svc.params or {}
        size = self.size(svc.size)
        catalogue = current_app.extensions["policies"].catalogue["application"]
        return application.ApplicationSpec(
            service_id=svc.id, institution_id=svc.institution_id,
            institution=svc.institution.acronym, hostname=svc.hostname,
            image=params.get("deployed_image") or params["image"],
            port=int(params["port"]), environment=self.environment(svc),
            health_path=params.get("health_path"), limits=infra.limits(size),
            volume_path=params.get("volume_path"),
            disk_bytes=size.disk_bytes if params.get("volume_path") and infra.volumes_root()
            else 0, volumes_root=infra.volumes_root(),
            allow_root=params["image"] in catalogue.run_as_root_images,
            health_interval=int(current_app.config.get("APP_HEALTH_INTERVAL", 10)),
            deployment=params.get("deployment"), **infra.common())

    def deployment_spec(self, svc: Service, image: str,
                        deployment: int) -> application.ApplicationSpec:
        """The application on another image, in the container of deployment `deployment`."""
        return dataclasses.replace(self.spec(svc), image=image, deployment=deployment)

    def follows(self, svc: Service) -> bool:
        return bool((svc.params or {}).get("follow_tag"))

    def provision(self, svc):
        client = infra.docker_client()
        first = None
        if self.follows(svc) and not svc.params.get("deployed_image"):
            first = self._pin_followed_tag(client, svc)
        self._ensure_image(client, svc)
        application.ensure_application(client, self.spec(svc), proxy_spec())
        if first is not None:
            first.status, first.finished_at = "deployed", utcnow()
            audit.record("application.deployed", svc, after={
                "digest": first.digest, "tag": first.tag, "trigger": first.trigger})

    def _pin_followed_tag(self, client, svc: Service) -> Deployment:
        """Run the digest the followed tag names now: the first deployment."""
        image = registry_images.in_registry(svc.params["image"])
        if image is None or image.tag is None:
            raise RuntimeError(f"image {svc.params['image']} is not a tag of the platform's "
                               "registry: it cannot be followed")
        digest = registry_images.resolve(image, image.tag)
        reference = registry_images.pull(client, image, digest)
        svc.params = {**svc.params, "digest": digest, "deployed_image": reference,
                      "deployment": None}
        first = Deployment(service_id=svc.id, institution_id=svc.institution_id,
                           repository=image.repository, digest=digest, tag=image.tag,
                           trigger="provision", status="pending")
        db.session.add(first)
        return first

    def _ensure_image(self, client, svc: Service) -> None:
        """The image is on the engine: pulled from the platform's registry when it is not."""
        params = svc.params
        image = params.get("deployed_image") or params["image"]
        try:
            client.images.get(image)
            return
        except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
            pass
        ours = registry_images.in_registry(image)
        if ours is None:
            raise RuntimeError(f"image {image} is not on the platform: upload its archive "
                               "or ask the data centre to publish it")
        reference = ours.tag or image.rpartition("@")[2]
        registry_images.pull(client, ours, reference)

    def stop(self, svc):
        application.stop_application(infra.docker_client(), self.spec(svc))

    def start(self, svc):
        client = infra.docker_client()
        self._ensure_image(client, svc)
        application.start_application(client, self.spec(svc), proxy_spec())

    def remove(self, svc):
        try:
            spec = self.spec(svc)
        except RuntimeError:  # a bound database already gone: remove without its settings
            spec = self.spec_without_database(svc)
        application.remove_application(infra.docker_client(), spec, proxy_spec())

    def spec_without_database(self, svc):
        params = dict(svc.params or {})
        params.pop("database_id", None)
        shadow = Service(id=svc.id, institution_id=svc.institution_id, hostname=svc.hostname,
                         size=svc.size, params=params, kind=svc.kind)
        shadow.institution = svc.institution
        return self.spec(shadow)

    def url(self, svc):
        return infra.public_url(svc.hostname)

    def container_name(self, svc):
        return application.app_container_name(infra.common()["prefix"], svc.id,
                                              (svc.params or {}).get("deployment"))

    def probe(self, svc):
        """The container runs and the health path answers through the front proxy."""
        ok, detail = super().probe(svc)
        if not ok:
            return ok, detail
        return probe_through_proxy(svc.hostname,
                                         (svc.params or {}).get("health_path") or "/")
