"""The shared mail platform (Postfix + Dovecot on the directory): its spec, repair, probes, and
what is done to mailboxes' storage inside it (archive, usage)."""
from __future__ import annotations

import logging
from datetime import timedelta

import docker.errors
from flask import current_app
from sqlalchemy import select

from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Backup, Mailbox, Service, utcnow
from provisioners import probes
from provisioners.mail import mailboxes
from provisioners.mail import platform as mail

log = logging.getLogger(__name__)


def platform_spec() -> mail.MailPlatformSpec:
    c = current_app.config
    size = current_app.extensions["policies"].platform["mail"]
    if not c.get("MAIL_SERVICE_PASSWORD") or not c.get("LDAP_LDAPI_DIR"):
        raise RuntimeError("MAIL_SERVICE_PASSWORD and LDAP_LDAPI_DIR must be configured")
    return mail.MailPlatformSpec(
        image=infra.image_ref(c["MAIL_IMAGE"]), publish_ip=c["MAIL_PUBLISH_IP"],
        smtp_port=int(c["MAIL_SMTP_PORT"]),
        imap_port=int(c["MAIL_IMAP_PORT"]), submission_port=int(c["MAIL_SUBMISSION_PORT"]),
        limits=infra.limits(size), ldapi_dir=str(c["LDAP_LDAPI_DIR"]), base_dn=c["LDAP_BASE_DN"],
        service_password=c["MAIL_SERVICE_PASSWORD"], hostname=c["MAIL_HOSTNAME"],
        **infra.common())


def ensure_platform() -> None:
    """The platform's directory account, then the Postfix + Dovecot container."""
    mailboxes.ensure_mail_service_account(infra.directory_config(),
                                          current_app.config["MAIL_SERVICE_PASSWORD"])
    mail.ensure_mail_platform(infra.docker_client(), platform_spec())


def probe() -> dict:
    c = current_app.config
    smtp = probes.smtp_probe(c["MAIL_PUBLISH_IP"], int(c["MAIL_SMTP_PORT"]))
    imap = probes.imap_probe(c["MAIL_PUBLISH_IP"], int(c["MAIL_IMAP_PORT"]))
    return {"smtp": {"ok": smtp.ok, "detail": smtp.detail},
            "imap": {"ok": imap.ok, "detail": imap.detail}}


def archive_mailbox(client, spec, box: Mailbox, anchor: Service) -> Backup | None:
    """A final backup of a mailbox's store, kept for the retention period of policies/."""
    path = _archive(client, spec, box)
    if path is None:
        return None
    days = current_app.extensions["retention"].days("final")
    backup = Backup(service_id=anchor.id, institution_id=box.institution_id, trigger="final",
                    path=str(path), size_bytes=path.stat().st_size,
                    expires_at=utcnow() + timedelta(days=days))
    db.session.add(backup)
    return backup


def _archive(client, spec, box: Mailbox):
    """The maildir as a .tar.gz under the backups folder, or None if there is none."""
    local, domain = box.address.split("@")
    try:
        stream, _ = client.containers.get(mail.container_name(spec.prefix)).get_archive(
            f"/var/vmail/{domain}/{local}")
    except docker.errors.NotFound:
        return None
    return infra.write_targz(stream, infra.backups_root() / box.institution.acronym / "mail",
                             f"{local}@{domain}")


def refresh_usage() -> int:
    """Mailbox storage as Dovecot counts it, for quotas and statements."""
    client, spec = infra.docker_client(), platform_spec()
    count = 0
    for box in db.session.scalars(select(Mailbox).where(Mailbox.is_alias.is_(False),
                                                        Mailbox.status == "active")):
        try:
            box.used_bytes = mail.mailbox_usage(client, spec, box.address)
            count += 1
        except Exception as exc:  # noqa: BLE001 - one mailbox must not stop the others
            log.warning("event=mail.usage_failed address=%s error=%s", box.address, exc)
    db.session.commit()
    return count
