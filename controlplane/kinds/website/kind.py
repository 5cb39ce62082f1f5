"""Static websites: nginx behind the front proxy, content uploaded as an archive or by SFTP."""
from __future__ import annotations

from flask import current_app
from flask_babel import lazy_gettext as _l

from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Service
from controlplane.kinds.base import BackedUp, Deployable, Kind
from controlplane.kinds.checks import check_hostname, check_size, size_choices
from controlplane.kinds.website.forms import WebsiteRequestForm
from controlplane.proxy.front import probe_through_proxy, proxy_spec
from controlplane.services import credentials
from controlplane.services.ports import allocate_port
from provisioners.website import sftp, site


class Website(Kind, BackedUp, Deployable):
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

    def spec(self, svc: Service) -> site.WebsiteSpec:
        size = self.size(svc.size)
        root = infra.volumes_root()
        disk = {"disk_bytes": size.disk_bytes, "volumes_root": root} if root else {}
        return site.WebsiteSpec(service_id=svc.id, institution_id=svc.institution_id,
                                institution=svc.institution.acronym, hostname=svc.hostname,
                                limits=infra.limits(size),
                                image=infra.image_ref(current_app.config["SITE_IMAGE"]),
                                **infra.common(), **disk)

    def provision(self, svc):
        spec = self.spec(svc)
        site.ensure_website(infra.docker_client(), spec, proxy_spec())
        # Only once the site answers: SFTP is never on the path to the site's first byte.
        self.ensure_sftp(svc, spec)

    def stop(self, svc):
        spec = self.spec(svc)
        sftp.stop_sftp(infra.docker_client(), spec)
        site.stop_website(infra.docker_client(), spec)

    def start(self, svc):
        spec = self.spec(svc)
        site.start_website(infra.docker_client(), spec, proxy_spec())
        self.ensure_sftp(svc, spec)

    def remove(self, svc):
        spec = self.spec(svc)
        sftp.remove_sftp(infra.docker_client(), spec)  # it uses the site volume
        site.remove_website(infra.docker_client(), spec, proxy_spec())

    # --- SFTP: the site's service account (svc-<id>) writes the content -------------------
    def ensure_sftp(self, svc: Service, spec: site.WebsiteSpec | None = None) -> None:
        """Port, password and the SFTP container; after the site, never before it."""
        cfg = current_app.config
        if not cfg["SFTP_ENABLED"]:
            return
        port = allocate_port(svc, "sftp_port", (self.name,), cfg["SFTP_PORT_RANGE"],
                             cfg["SFTP_PUBLISH_IP"], "SFTP")
        sftp_spec = sftp.SftpSpec(site=spec or self.spec(svc),
                                  image=infra.image_ref(cfg["SFTP_IMAGE"]),
                                  publish_ip=cfg["SFTP_PUBLISH_IP"], host_port=port,
                                  helper_image=infra.image_ref(cfg["BASE_IMAGE"]))
        sftp.ensure_sftp(infra.docker_client(), sftp_spec, self._account_password(svc))

    def sftp_address(self, svc: Service) -> str | None:
        """sftp://svc-<id>@host:port/site/ once a port is allocated."""
        port = svc.params.get("sftp_port") if svc.params else None
        if not port or not current_app.config["SFTP_ENABLED"] or svc.status in ("deleting",
                                                                                 "deleted"):
            return None
        cfg = current_app.config
        return sftp.sftp_url(cfg.get("SFTP_PUBLIC_HOST") or cfg["SFTP_PUBLISH_IP"], int(port),
                             svc.id)

    def _account_password(self, svc: Service) -> str:
        """The service account's password, created here if the account does not exist yet."""
        password = credentials.get(svc, "service_account")
        if password is None:  # services.jobs.ensure_service_account then uses this one
            password = credentials.generate_password()
            credentials.put(svc, "service_account", password)
            db.session.commit()
        return password

    def deploy(self, svc, clean_tar):
        site.deploy_content(infra.docker_client(), self.spec(svc), clean_tar,
                            helper_image=infra.image_ref(current_app.config["BASE_IMAGE"]))

    def url(self, svc):
        return infra.public_url(svc.hostname)

    def backup(self, svc, dest):
        """The site's content as a .tar.gz, read from the volume through its container."""
        container = infra.docker_client().containers.get(self.container_name(svc))
        stream, _stat = container.get_archive("/srv/site/.")
        return infra.write_targz(stream, dest, f"site-{svc.id}")

    def container_name(self, svc):
        return site.site_container_name(infra.common()["prefix"], svc.id)

    def probe(self, svc):
        """The container runs and the site answers through the front proxy."""
        ok, detail = super().probe(svc)
        return probe_through_proxy(svc.hostname) if ok else (ok, detail)
