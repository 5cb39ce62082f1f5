"""Static websites: nginx behind the front proxy, content uploaded as an archive or by SFTP."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from controlplane.core import infra
from controlplane.core.models import Institution, Service
from controlplane.kinds.registry import Kind, register


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
    from controlplane.requests.lifecycle import LifecycleError, hostname_taken

    hostname = (hostname or "").strip().lower().rstrip(".")
    from flask import current_app

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
    from flask import current_app

    from controlplane.requests.lifecycle import LifecycleError

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
    detail_template = "kinds/website/detail.html"

    def prepare_form(self, form, institution):
        form.size.choices = size_choices(self.name)
        if not form.hostname.data and not form.is_submitted():
            form.hostname.data = f"www.{institution.domain}"
        form.hostname.description = _l("Must be under %(domain)s.", domain=institution.domain)

    def clean(self, data, institution):
        return {"hostname": check_hostname(data.get("hostname"), institution),
                "size": check_size(self.name, data.get("size")), "params": {}}

    def spec(self, svc: Service):
        from provisioners.website.site import WebsiteSpec

        from flask import current_app

        size = self.size(svc.size)
        return WebsiteSpec(service_id=svc.id, institution_id=svc.institution_id,
                           institution=svc.institution.acronym, hostname=svc.hostname,
                           limits=infra.limits(size), image=current_app.config["SITE_IMAGE"],
                           **infra.common(), **self._disk(size))

    def _disk(self, size) -> dict:
        from dataclasses import fields

        from provisioners.website.site import WebsiteSpec

        names = {f.name for f in fields(WebsiteSpec)}
        root = infra.volumes_root()
        if "disk_bytes" in names and root:
            return {"disk_bytes": size.disk_bytes, "volumes_root": root}
        return {}

    def provision(self, svc):
        from provisioners.website import site as website

        site = self.spec(svc)
        website.ensure_website(infra.docker_client(), site, infra.proxy_spec())
        # Only once the site answers: SFTP is never on the path to the site's first byte.
        self.ensure_sftp(svc, site)

    def stop(self, svc):
        from provisioners.website import sftp, site as website

        site = self.spec(svc)
        sftp.stop_sftp(infra.docker_client(), site)
        website.stop_website(infra.docker_client(), site)

    def start(self, svc):
        from provisioners.website import site as website

        site = self.spec(svc)
        website.start_website(infra.docker_client(), site, infra.proxy_spec())
        self.ensure_sftp(svc, site)

    def remove(self, svc):
        from provisioners.website import sftp, site as website

        site = self.spec(svc)
        sftp.remove_sftp(infra.docker_client(), site)  # it uses the site volume
        website.remove_website(infra.docker_client(), site, infra.proxy_spec())

    # --- SFTP: the site's service account (svc-<id>) writes the content -------------------
    def ensure_sftp(self, svc: Service, site=None) -> None:
        """Port, password and the SFTP container; after the site, never before it."""
        from flask import current_app

        from provisioners.website import sftp

        cfg = current_app.config
        if not cfg["SFTP_ENABLED"]:
            return
        port = self._allocate_sftp_port(svc)
        spec = sftp.SftpSpec(site=site or self.spec(svc), image=cfg["SFTP_IMAGE"],
                             publish_ip=cfg["SFTP_PUBLISH_IP"], host_port=port)
        sftp.ensure_sftp(infra.docker_client(), spec, self._account_password(svc))

    def sftp_address(self, svc: Service) -> str | None:
        """sftp://svc-<id>@host:port/site/ once a port is allocated."""
        from flask import current_app

        from provisioners.website import sftp

        port = svc.params.get("sftp_port") if svc.params else None
        if not port or not current_app.config["SFTP_ENABLED"] or svc.status in ("deleting",
                                                                                 "deleted"):
            return None
        cfg = current_app.config
        return sftp.sftp_url(cfg.get("SFTP_PUBLIC_HOST") or cfg["SFTP_PUBLISH_IP"], int(port),
                             svc.id)

    def _account_password(self, svc: Service) -> str:
        """The service account's password, created here if the account does not exist yet."""
        from controlplane.services import credentials
        from controlplane.core.extensions import db

        password = credentials.get(svc, "service_account")
        if password is None:  # jobs.ensure_service_account then finds and uses this one
            password = credentials.generate_password()
            credentials.put(svc, "service_account", password)
            db.session.commit()
        return password

    def _allocate_sftp_port(self, svc: Service) -> int:
        """A published port from SFTP_PORT_RANGE, unique among live websites."""
        from flask import current_app

        cfg = current_app.config
        return infra.allocate_port(svc, "sftp_port", (self.name,), cfg["SFTP_PORT_RANGE"],
                                   cfg["SFTP_PUBLISH_IP"], "SFTP")

    def deploy(self, svc, tar_bytes: bytes) -> None:
        from provisioners.website import site as website

        website.deploy_content(infra.docker_client(), self.spec(svc), tar_bytes)

    def url(self, svc):
        return infra.public_url(svc.hostname)

    def backup(self, svc, dest):
        """The site's content as a .tar.gz, read from the volume through its container."""
        from provisioners.website import site as website

        container = infra.docker_client().containers.get(website.container_name(self.spec(svc)))
        stream, _stat = container.get_archive("/srv/site/.")
        return infra.write_targz(stream, dest, f"site-{svc.id}")

    def container_name(self, svc):
        return f"{infra.common()['prefix']}-web-{svc.id}"

    def probe(self, svc):
        """The container runs and the site answers through the front proxy."""
        ok, detail = super().probe(svc)
        return infra.probe_through_proxy(svc.hostname) if ok else (ok, detail)


register(Website())
