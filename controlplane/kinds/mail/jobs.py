"""Mail jobs: closing a mailbox's sessions, archiving and removing a mailbox, storage usage."""
from __future__ import annotations

from flask import current_app

from controlplane.audit import trail as audit
from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Mailbox
from controlplane.kinds.mail import platform
from controlplane.kinds.mail.kind import mail_service
from controlplane.worker.runner import job, short_error
from provisioners.mail import mailboxes
from provisioners.mail import platform as mail


def _mailbox_job_failed(exc: Exception, mailbox_id: int, action: str) -> None:
    box = db.session.get(Mailbox, mailbox_id)
    audit.record(f"mailbox.{action}_failed", box, after={"error": short_error(exc)})


@job(on_failure=_mailbox_job_failed)
def run_mailbox_job(mailbox_id: int, action: str) -> str:
    """Close sessions ("kick"), or archive + remove a mailbox ("delete", final backup kept)."""
    box = db.session.get(Mailbox, mailbox_id)
    if box is None:
        return "gone"
    spec, client = platform.platform_spec(), infra.docker_client()
    if action == "kick":
        mail.kick_mailbox(client, spec, box.address)
        return "done"
    anchor = mail_service(box.institution)
    if anchor is not None:
        platform.archive_mailbox(client, spec, box, anchor)
    mailboxes.remove_mailbox(infra.directory_config(), box.institution.acronym, box.address)
    mail.kick_mailbox(client, spec, box.address)
    mail.purge_mailbox_storage(client, spec, box.address)
    audit.record("mailbox.deleted", box, before={"address": box.address})
    db.session.delete(box)
    db.session.commit()
    return "done"


@job()
def mail_usage() -> int:
    """Mailbox storage used, for quota warnings and statements (periodic)."""
    if not current_app.config.get("MAIL_SERVICE_PASSWORD"):
        return 0
    return platform.refresh_usage()
