"""Official mail: the shared platform, institutions' domains, mailboxes and aliases.

Mailbox and alias changes write the directory (the mail platform's only source) within the
request: a single LDAP operation takes milliseconds, and failing there keeps the portal and
the directory in step. Work that touches the mail container (storage, sessions) is a job.
"""
from __future__ import annotations

import logging
from flask import current_app
from sqlalchemy import select

from controlplane.audit import trail as audit
from controlplane.services import credentials
from controlplane.core import infra
from controlplane.worker import queue as tasks
from controlplane.core.extensions import db
from controlplane.services.jobs import _context, short_error
from controlplane.core.models import Backup, Institution, Mailbox, Service, utcnow

log = logging.getLogger(__name__)


class MailError(ValueError):
    """Refused; the message tells the focal point what to change."""


def cfg():
    from controlplane.accounts.views import directory_config

    return directory_config()


def platform_spec():
    from provisioners.mail.platform import MailPlatformSpec

    c = current_app.config
    size = current_app.extensions["policies"].platform["mail"]
    if not c.get("MAIL_SERVICE_PASSWORD") or not c.get("LDAP_LDAPI_DIR"):
        raise RuntimeError("MAIL_SERVICE_PASSWORD and LDAP_LDAPI_DIR must be configured")
    return MailPlatformSpec(
        image=c["MAIL_IMAGE"], publish_ip=c["MAIL_PUBLISH_IP"], smtp_port=int(c["MAIL_SMTP_PORT"]),
        imap_port=int(c["MAIL_IMAP_PORT"]), submission_port=int(c["MAIL_SUBMISSION_PORT"]),
        limits=infra.limits(size), ldapi_dir=str(c["LDAP_LDAPI_DIR"]), base_dn=c["LDAP_BASE_DN"],
        service_password=c["MAIL_SERVICE_PASSWORD"], hostname=c["MAIL_HOSTNAME"],
        **infra.common())


def ensure_platform() -> None:
    """The platform's directory account, then the Postfix + Dovecot container."""
    from provisioners.mail import platform as mail, mailboxes

    mailboxes.ensure_mail_service_account(cfg(), current_app.config["MAIL_SERVICE_PASSWORD"])
    mail.ensure_mail_platform(infra.docker_client(), platform_spec())


def probe() -> dict:
    from provisioners import probes as health

    c = current_app.config
    smtp = health.smtp_probe(c["MAIL_PUBLISH_IP"], int(c["MAIL_SMTP_PORT"]))
    imap = health.imap_probe(c["MAIL_PUBLISH_IP"], int(c["MAIL_IMAP_PORT"]))
    return {"smtp": {"ok": smtp.ok, "detail": smtp.detail},
            "imap": {"ok": imap.ok, "detail": imap.detail}}


def mail_service(inst: Institution) -> Service | None:
    return db.session.scalar(select(Service).where(
        Service.institution_id == inst.id, Service.kind == "mail", Service.status != "deleted"))


def _address(local: str, inst: Institution) -> str:
    import policies as pol
    from provisioners.mail import mailboxes

    local = (local or "").strip().lower()
    problem = pol.name_problem(current_app.extensions["policies"], "mailbox", local)
    if problem:
        raise MailError(f"« {local} » : {problem}")
    address = f"{local}@{inst.domain}"
    try:
        return mailboxes.validate_address(address)
    except ValueError as exc:
        raise MailError(str(exc)) from None


def create_mailbox(actor, local: str, quota_mib: int) -> tuple[Mailbox, str]:
    """Check the quota under the institution's lock, add the entry; returns the password."""
    from provisioners.mail import mailboxes

    from controlplane.quotas import allocation as quotas

    inst = actor.institution
    if mail_service(inst) is None or mail_service(inst).status != "running":
        raise MailError("mail_not_enabled")
    limits = current_app.extensions["policies"].mailbox
    if not isinstance(quota_mib, int) or not limits.min_mib <= quota_mib <= limits.max_mib:
        raise MailError(f"quota: {limits.min_mib}–{limits.max_mib} MiB")
    address = _address(local, inst)
    inst_id, actor_id = inst.id, actor.id
    quotas.lock(inst_id)
    inst = db.session.get(Institution, inst_id)
    if db.session.scalar(select(Mailbox.id).where(Mailbox.address == address)):
        db.session.rollback()
        raise MailError(f"{address}: already exists")
    decision = quotas.decide(inst, {"kind": "mailbox", "mail_mib": quota_mib})
    if not decision.allowed:
        db.session.rollback()
        raise MailError("; ".join(quotas.explain(decision)))
    password = credentials.generate_password(16)
    box = Mailbox(institution_id=inst_id, address=address, quota_mib=quota_mib)
    db.session.add(box)
    db.session.flush()
    try:
        mailboxes.ensure_mailbox(cfg(), inst.acronym, address, password, quota_mib * 2**20)
    except Exception as exc:
        db.session.rollback()
        raise MailError(str(exc)) from None
    from controlplane.core.models import Account

    audit.record("mailbox.created", box, actor=db.session.get(Account, actor_id),
                 after={"address": address, "quota_mib": quota_mib})
    db.session.commit()
    return box, password


def reset_password(actor, box: Mailbox) -> str:
    from provisioners.mail import mailboxes

    password = credentials.generate_password(16)
    mailboxes.set_mailbox_password(cfg(), box.institution.acronym, box.address, password)
    audit.record("mailbox.password_reset", box, actor=actor)
    db.session.commit()
    _enqueue("kick", box)
    return password


def set_enabled(actor, box: Mailbox, enabled: bool) -> None:
    from provisioners.mail import mailboxes

    fn = mailboxes.enable_mailbox if enabled else mailboxes.disable_mailbox
    fn(cfg(), box.institution.acronym, box.address)
    before = {"enabled": box.enabled}
    box.enabled = enabled
    audit.record("mailbox.enabled" if enabled else "mailbox.disabled", box, actor=actor,
                 before=before, after={"enabled": enabled})
    db.session.commit()
    if not enabled:
        _enqueue("kick", box)


def create_alias(actor, local: str, targets_text: str) -> Mailbox:
    """An alias of the institution's domain to mailboxes/aliases of the same institution."""
    from provisioners.mail import mailboxes

    inst = actor.institution
    if mail_service(inst) is None:
        raise MailError("mail_not_enabled")
    address = _address(local, inst)
    targets = sorted({t.strip().lower() for t in (targets_text or "").replace(",", "\n")
                      .splitlines() if t.strip()})
    if not targets:
        raise MailError("no target")
    own = {b.address: b for b in db.session.scalars(select(Mailbox).where(
        Mailbox.institution_id == inst.id))}
    if address in own or db.session.scalar(select(Mailbox.id).where(Mailbox.address == address)):
        raise MailError(f"{address}: already exists")
    outside = [t for t in targets if t not in own]
    if outside:
        raise MailError("outside: " + ", ".join(outside))
    graph = {a: b.targets for a, b in own.items() if b.is_alias}
    graph[address] = targets
    loop = mailboxes.find_alias_loop(graph, address)
    if loop:
        raise MailError("loop: " + " -> ".join(loop))
    try:
        mailboxes.ensure_alias(cfg(), inst.acronym, address, targets)
    except ValueError as exc:
        raise MailError(str(exc)) from None
    box = Mailbox(institution_id=inst.id, address=address, is_alias=True, targets=targets)
    db.session.add(box)
    db.session.flush()
    audit.record("alias.created", box, actor=actor, after={"address": address,
                                                           "targets": targets})
    db.session.commit()
    return box


def delete(actor, box: Mailbox) -> None:
    """Aliases go at once; a mailbox is archived, then removed, by a worker."""
    from provisioners.mail import mailboxes

    if box.is_alias:
        mailboxes.remove_alias(cfg(), box.institution.acronym, box.address)
        audit.record("alias.deleted", box, actor=actor, before={"address": box.address})
        db.session.delete(box)
        db.session.commit()
        return
    box.status = "deleting"
    audit.record("mailbox.delete_requested", box, actor=actor)
    db.session.commit()
    _enqueue("delete", box)


def _enqueue(action: str, box: Mailbox) -> None:
    try:
        tasks.enqueue_unique("controlplane.kinds.mail.mailboxes.run", box.id, action,
                             job_id=f"mailbox-{box.id}-{action}")
    except tasks.QueueUnavailable:
        log.error("event=mail.enqueue_failed mailbox=%s action=%s", box.id, action)


def run(mailbox_id: int, action: str) -> str:
    """Job: close sessions, or archive + remove a mailbox (final backup kept per policies)."""
    from provisioners.mail import platform as mail, mailboxes

    with _context():
        box = db.session.get(Mailbox, mailbox_id)
        if box is None:
            return "gone"
        spec, client = platform_spec(), infra.docker_client()
        try:
            if action == "kick":
                mail.kick_mailbox(client, spec, box.address)
                return "done"
            anchor = mail_service(box.institution)
            if anchor is not None:
                archive_mailbox(client, spec, box, anchor)
            mailboxes.remove_mailbox(cfg(), box.institution.acronym, box.address)
            mail.kick_mailbox(client, spec, box.address)
            mail.purge_mailbox_storage(client, spec, box.address)
        except Exception as exc:  # noqa: BLE001
            db.session.rollback()
            log.exception("event=mail.job_failed mailbox=%s action=%s", mailbox_id, action)
            box = db.session.get(Mailbox, mailbox_id)
            audit.record(f"mailbox.{action}_failed", box, after={"error": short_error(exc)})
            db.session.commit()
            return "failed"
        audit.record("mailbox.deleted", box, before={"address": box.address})
        db.session.delete(box)
        db.session.commit()
        return "done"


def archive_mailbox(client, spec, box: Mailbox, anchor: Service) -> Backup | None:
    """A final backup of a mailbox's store, kept for the retention period of policies/."""
    from datetime import timedelta

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
    import docker.errors
    from provisioners.mail.platform import container_name

    local, domain = box.address.split("@")
    try:
        stream, _ = client.containers.get(container_name(spec.prefix)).get_archive(
            f"/var/vmail/{domain}/{local}")
    except docker.errors.NotFound:
        return None
    return infra.write_targz(stream, infra.backups_root() / box.institution.acronym / "mail",
                             f"{local}@{domain}")


def refresh_usage() -> int:
    """Mailbox storage as Dovecot counts it, for quotas and statements."""
    from provisioners.mail import platform as mail

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
