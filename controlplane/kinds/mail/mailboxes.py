"""Mailboxes and aliases of an institution's domain, as focal points manage them.

Mailbox and alias changes write the directory (the mail platform's only source) within the
request: a single LDAP operation takes milliseconds, and failing there keeps the portal and
the directory in step. Work that touches the mail container (storage, sessions) is a job.
"""
from __future__ import annotations

import logging

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

import policies as pol
from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.infra import directory_config
from controlplane.core.models import Account, Institution, Mailbox
from controlplane.kinds.mail.jobs import run_mailbox_job
from controlplane.kinds.mail.kind import mail_service
from controlplane.quotas import allocation as quotas
from controlplane.services import credentials
from controlplane.worker import queue
from provisioners.mail import mailboxes

log = logging.getLogger(__name__)

NAME_PROBLEMS = {
    "syntax": _l("use lowercase letters, digits, dots, hyphens or underscores"),
    "too_long": _l("it is too long"),
    "reserved": _l("it is kept for the platform"),
}


class MailError(ValueError):
    """Refused; the message (translated) tells the focal point what to change."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = message


def _address(local: str, inst: Institution) -> str:
    local = (local or "").strip().lower()
    problem = pol.name_problem(current_app.extensions["policies"], "mailbox", local)
    if problem:
        raise MailError(_l("“%(local)s” cannot be used: %(problem)s.", local=local,
                           problem=NAME_PROBLEMS.get(problem, problem)))
    address = f"{local}@{inst.domain}"
    try:
        return mailboxes.validate_address(address)
    except ValueError as exc:
        raise MailError(_l("Refused: %(reasons)s", reasons=str(exc))) from None


def _not_enabled() -> MailError:
    return MailError(_l("Your institution has no official mail yet: request it first."))


def create_mailbox(actor: Account, local: str, quota_mib: int) -> tuple[Mailbox, str]:
    """Check the quota under the institution's lock, add the entry; returns the password."""
    inst = actor.institution
    service = mail_service(inst)
    if service is None or service.status != "running":
        raise _not_enabled()
    limits = current_app.extensions["policies"].mailbox
    if not isinstance(quota_mib, int) or not limits.min_mib <= quota_mib <= limits.max_mib:
        raise MailError(_l("The storage quota of a mailbox must be between %(range)s.",
                           range=f"{limits.min_mib}–{limits.max_mib} MiB"))
    address = _address(local, inst)
    inst_id, actor_id = inst.id, actor.id
    quotas.lock(inst_id)
    inst = db.session.get(Institution, inst_id)
    if db.session.scalar(select(Mailbox.id).where(Mailbox.address == address)):
        db.session.rollback()
        raise MailError(_l("%(address)s already exists.", address=address))
    decision = quotas.decide(inst, {"kind": "mailbox", "mail_mib": quota_mib})
    if not decision.allowed:
        db.session.rollback()
        raise MailError(_l("Refused: %(reasons)s", reasons="; ".join(quotas.explain(decision))))
    password = credentials.generate_password(16)
    box = Mailbox(institution_id=inst_id, address=address, quota_mib=quota_mib)
    db.session.add(box)
    db.session.flush()
    try:
        mailboxes.ensure_mailbox(directory_config(), inst.acronym, address, password,
                                 quota_mib * 2**20)
    except Exception as exc:
        db.session.rollback()
        raise MailError(_l("Refused: %(reasons)s", reasons=str(exc))) from None
    audit.record("mailbox.created", box, actor=db.session.get(Account, actor_id),
                 after={"address": address, "quota_mib": quota_mib})
    db.session.commit()
    return box, password


def reset_password(actor: Account, box: Mailbox) -> str:
    password = credentials.generate_password(16)
    mailboxes.set_mailbox_password(directory_config(), box.institution.acronym, box.address,
                                   password)
    audit.record("mailbox.password_reset", box, actor=actor)
    db.session.commit()
    _enqueue("kick", box)
    return password


def set_enabled(actor: Account, box: Mailbox, enabled: bool) -> None:
    fn = mailboxes.enable_mailbox if enabled else mailboxes.disable_mailbox
    fn(directory_config(), box.institution.acronym, box.address)
    before = {"enabled": box.enabled}
    box.enabled = enabled
    audit.record("mailbox.enabled" if enabled else "mailbox.disabled", box, actor=actor,
                 before=before, after={"enabled": enabled})
    db.session.commit()
    if not enabled:
        _enqueue("kick", box)


def create_alias(actor: Account, local: str, targets_text: str) -> Mailbox:
    """An alias of the institution's domain to mailboxes/aliases of the same institution."""
    inst = actor.institution
    if mail_service(inst) is None:
        raise _not_enabled()
    address = _address(local, inst)
    targets = sorted({t.strip().lower() for t in (targets_text or "").replace(",", "\n")
                      .splitlines() if t.strip()})
    if not targets:
        raise MailError(_l("Give at least one address to deliver to."))
    own = {b.address: b for b in db.session.scalars(select(Mailbox).where(
        Mailbox.institution_id == inst.id))}
    if address in own or db.session.scalar(select(Mailbox.id).where(Mailbox.address == address)):
        raise MailError(_l("%(address)s already exists.", address=address))
    outside = [t for t in targets if t not in own]
    if outside:
        raise MailError(_l("These targets are not mailboxes or aliases of your institution: "
                           "%(t)s", t=", ".join(outside)))
    graph = {a: b.targets for a, b in own.items() if b.is_alias}
    graph[address] = targets
    loop = mailboxes.find_alias_loop(graph, address)
    if loop:
        raise MailError(_l("This alias would make a loop: %(path)s", path=" -> ".join(loop)))
    try:
        mailboxes.ensure_alias(directory_config(), inst.acronym, address, targets)
    except ValueError as exc:
        raise MailError(_l("Refused: %(reasons)s", reasons=str(exc))) from None
    box = Mailbox(institution_id=inst.id, address=address, is_alias=True, targets=targets)
    db.session.add(box)
    db.session.flush()
    audit.record("alias.created", box, actor=actor, after={"address": address,
                                                           "targets": targets})
    db.session.commit()
    return box


def delete(actor: Account, box: Mailbox) -> None:
    """Aliases go at once; a mailbox is archived, then removed, by a worker."""
    if box.is_alias:
        mailboxes.remove_alias(directory_config(), box.institution.acronym, box.address)
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
        queue.enqueue_unique(run_mailbox_job, box.id, action, job_id=f"mailbox-{box.id}-{action}")
    except queue.QueueUnavailable:
        log.error("event=mail.enqueue_failed mailbox=%s action=%s", box.id, action)
