"""An institution's official mail domain on the shared Postfix + Dovecot platform."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from controlplane.core import infra
from controlplane.core.extensions import db
from controlplane.core.models import Institution, Mailbox, Service
from controlplane.core.transitions import LifecycleError
from controlplane.kinds.base import Kind
from controlplane.kinds.mail.forms import MailRequestForm
from controlplane.kinds.mail.platform import archive_mailbox, platform_spec
from provisioners.mail import mailboxes
from provisioners.mail import platform as mail


def mail_service(inst: Institution) -> Service | None:
    """The institution's live mail domain, if it has one."""
    return db.session.scalar(select(Service).where(
        Service.institution_id == inst.id, Service.kind == "mail", Service.status != "deleted"))


class MailDomain(Kind):
    name = "mail"
    label = _l("official mail")
    description = _l("Mailboxes and aliases under your institution’s domain, on the data "
                     "centre’s mail platform (SMTP and IMAP). Mailboxes then count against "
                     "your quota of mailboxes and mail storage.")
    form_class = MailRequestForm
    detail_template = "kinds/mail/detail.html"
    counts_against_quota = False
    actions = {"delete", "retry"}

    def clean(self, data, institution):
        if mail_service(institution) is not None:
            raise LifecycleError(_l("Your institution already has official mail."))
        return {"name": institution.domain, "size": "-", "params": {}}

    def provision(self, svc):
        mailboxes.ensure_mail_domain(infra.directory_config(), svc.institution.acronym,
                                     svc.institution.domain)
        svc.institution.mail_enabled = True

    def stop(self, svc):
        raise RuntimeError("official mail cannot be stopped; disable mailboxes instead")

    start = stop

    def remove(self, svc):
        """Every mailbox's storage and entry, its aliases, then the domain."""
        client, spec = infra.docker_client(), platform_spec()
        for box in db.session.scalars(select(Mailbox).where(
                Mailbox.institution_id == svc.institution_id)):
            if not box.is_alias:
                archive_mailbox(client, spec, box, svc)  # kept for the retention period
                mail.kick_mailbox(client, spec, box.address)
                mail.purge_mailbox_storage(client, spec, box.address)
            db.session.delete(box)
        mailboxes.remove_mail_domain(infra.directory_config(), svc.institution.acronym)
        svc.institution.mail_enabled = False

    def display_name(self, svc):
        return svc.name

    def probe(self, svc):
        return True, "domain in the directory"
