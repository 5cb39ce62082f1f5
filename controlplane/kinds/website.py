"""Static websites: nginx behind the front proxy, content uploaded as an archive."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

import policies

from .. import infra
from ..models import Institution, Service
from . import Kind, register


class WebsiteRequestForm(FlaskForm):
    hostname = StringField(_l("Host name"), validators=[DataRequired(), Length(max=253)])
    size = SelectField(_l("Size"), validators=[DataRequired()], validate_choice=False)


def size_choices(kind: str) -> list[tuple[str, str]]:
    from flask import current_app
    from flask_babel import gettext as _

    sizes = current_app.extensions["policies"].sizes[kind]
    return [(name, _("%(name)s — %(cpu)s CPU, %(mem)s MiB memory, %(disk)s MiB disk",
                     name=name, cpu=s.cpu, mem=s.memory_mib, disk=s.disk_mib))
            for name, s in sizes.items()]


def check_hostname(hostname: str, institution: Institution) -> str:
    """Normalise and validate a host name under the institution's domain (LifecycleError)."""
    from ..lifecycle import LifecycleError, hostname_taken

    hostname = (hostname or "").strip().lower().rstrip(".")
    problem = policies.hostname_problem(hostname, institution.domain)
    if problem == "syntax":
        raise LifecycleError(_l("“%(host)s” is not a valid host name: use letters, digits and "
                                "hyphens separated by dots, e.g. www.%(domain)s.",
                                host=hostname, domain=institution.domain), field="hostname")
    if problem == "outside":
        raise LifecycleError(_l("The host name must be under your institution's domain "
                                "%(domain)s, e.g. www.%(domain)s.", domain=institution.domain),
                             field="hostname")
    if hostname_taken(hostname):
        raise LifecycleError(_l("%(host)s is already used or requested; choose another name.",
                                host=hostname), field="hostname")
    return hostname


def check_size(kind: str, size: str) -> str:
    from flask import current_app

    from ..lifecycle import LifecycleError

    names = current_app.extensions["policies"].size_names(kind)
    if size not in names:
        raise LifecycleError(_l("Unknown size “%(size)s”; choose one of %(sizes)s.", size=size,
                                sizes=", ".join(names)), field="size")
    return size


class Website(Kind):
    name = "website"
    label = _l("website")
    description = _l("A static website (HTML, CSS, images) served by the data centre. After "
                     "approval you upload its content as an archive.")
    form_class = WebsiteRequestForm
    detail_template = "services/kinds/website.html"

    def prepare_form(self, form, institution):
        form.size.choices = size_choices(self.name)
        if not form.hostname.data and not form.is_submitted():
            form.hostname.data = f"www.{institution.domain}"
        form.hostname.description = _l("Must be under %(domain)s.", domain=institution.domain)

    def clean(self, data, institution):
        return {"hostname": check_hostname(data.get("hostname"), institution),
                "size": check_size(self.name, data.get("size")), "params": {}}

    def spec(self, svc: Service):
        from provisioners.website import WebsiteSpec

        from flask import current_app

        size = self.size(svc.size)
        return WebsiteSpec(service_id=svc.id, institution_id=svc.institution_id,
                           institution=svc.institution.acronym, hostname=svc.hostname,
                           limits=infra.limits(size), image=current_app.config["SITE_IMAGE"],
                           **infra.common(), **self._disk(size))

    def _disk(self, size) -> dict:
        from dataclasses import fields

        from provisioners.website import WebsiteSpec

        names = {f.name for f in fields(WebsiteSpec)}
        root = infra.volumes_root()
        if "disk_bytes" in names and root:
            return {"disk_bytes": size.disk_bytes, "volumes_root": root}
        return {}

    def provision(self, svc):
        from provisioners import website

        website.ensure_website(infra.docker_client(), self.spec(svc), infra.proxy_spec())

    def stop(self, svc):
        from provisioners import website

        website.stop_website(infra.docker_client(), self.spec(svc))

    def start(self, svc):
        from provisioners import website

        website.start_website(infra.docker_client(), self.spec(svc), infra.proxy_spec())

    def remove(self, svc):
        from provisioners import website

        website.remove_website(infra.docker_client(), self.spec(svc), infra.proxy_spec())

    def deploy(self, svc, tar_bytes: bytes) -> None:
        from provisioners import website

        website.deploy_content(infra.docker_client(), self.spec(svc), tar_bytes)

    def url(self, svc):
        return infra.public_url(svc.hostname)

    def backup(self, svc, dest):
        """The site's content as a .tar.gz, read from the volume through its container."""
        import gzip
        import os
        from datetime import datetime, timezone

        from provisioners import website

        container = infra.docker_client().containers.get(website.container_name(self.spec(svc)))
        stream, _stat = container.get_archive("/srv/site/.")
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = dest / f"site-{svc.id}-{stamp}.tar.gz"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as gz:
            for chunk in stream:
                gz.write(chunk)
        return path

    def container_name(self, svc):
        return f"{infra.common()['prefix']}-web-{svc.id}"

    def probe(self, svc):
        """The container runs and the site answers through the front proxy."""
        from flask import current_app

        from provisioners import health

        ok, detail = super().probe(svc)
        if not ok:
            return ok, detail
        bind = current_app.config["PROXY_BIND"]
        result = health.http_probe(bind if bind not in ("0.0.0.0", "") else "127.0.0.1",
                                   int(current_app.config["PROXY_PORT"]),
                                   host_header=svc.hostname, path="/")
        return result.ok, f"HTTP {result.detail} ({result.latency_ms:.0f} ms)"


register(Website())
