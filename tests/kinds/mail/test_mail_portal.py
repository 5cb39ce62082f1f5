"""Official mail through the portal, used with real SMTP and IMAP clients."""
from __future__ import annotations

import email.message
import imaplib
import re
import smtplib
import ssl
import time

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Backup, Mailbox, Request
from tests.conftest import run_worker

pytestmark = pytest.mark.docker


@pytest.fixture
def mail_app(docker_app, mail_settings, auth, client):
    """The app with official mail approved for MINISANTE and OBR, on a running platform."""
    docker_app.config.update(mail_settings)
    from controlplane.kinds.mail import platform as mail

    with docker_app.app_context():
        mail.ensure_platform()
    for user in ("fp.sante", "fp.obr"):
        auth.login(user)
        response = auth.post("/portal/requests/new/mail", {}, page="/portal/requests/new/mail")
        assert response.status_code == 302, response.get_data(as_text=True)[-1500:]
        auth.logout()
    auth.login("op.one")
    with docker_app.app_context():
        ids = [r.id for r in db.session.scalars(select(Request).where(Request.kind == "mail"))]
    for request_id in ids:
        auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}")
    auth.logout()
    run_worker(docker_app)
    yield docker_app
    from controlplane.core.models import Service
    from controlplane.services import jobs

    with docker_app.app_context():
        for svc in db.session.scalars(select(Service).where(Service.kind == "mail")).all():
            jobs.run_service_action(svc.id, "delete")


def create_mailbox(auth, local: str, quota: int = 256) -> str:
    page = auth.post("/portal/mail/mailboxes", {"local": local, "quota_mib": str(quota)},
                     page="/portal/mail/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html[-2000:]
    return re.search(r'<code id="password">([^<]+)</code>', html).group(1)


def tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def imap_login(app, address, password) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", app.config["MAIL_IMAP_PORT"], timeout=10)
    imap.starttls(ssl_context=tls())
    imap.login(address, password)
    return imap


def message(sender, to, subject, body="Bonjour.\n"):
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(body)
    return msg.as_bytes()


def wait_for_mail(app, address, password, subject, timeout=15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        imap = imap_login(app, address, password)
        try:
            imap.select("INBOX")
            _, data = imap.search(None, "SUBJECT", f'"{subject}"')
            if data and data[0].split():
                return True
        finally:
            imap.logout()
        time.sleep(0.3)
    return False


def test_mailbox_lifecycle_with_real_clients(mail_app, client, auth):
    app = mail_app
    auth.login("fp.sante")
    password = create_mailbox(auth, "jean.ndayizeye")
    address = "jean.ndayizeye@minisante.gov.bi"
    imap_login(app, address, password).logout()
    with smtplib.SMTP("127.0.0.1", app.config["MAIL_SMTP_PORT"], timeout=10) as smtp:
        smtp.sendmail("partenaire@example.org", [address], message(
            "partenaire@example.org", address, "Rapport mensuel"))
    assert wait_for_mail(app, address, password, "Rapport mensuel")

    # between two institutions' domains
    auth.logout()
    auth.login("fp.obr")
    obr_password = create_mailbox(auth, "recettes")
    with smtplib.SMTP("127.0.0.1", app.config["MAIL_SUBMISSION_PORT"], timeout=10) as smtp:
        smtp.starttls(context=tls())
        smtp.login("recettes@obr.gov.bi", obr_password)
        smtp.sendmail("recettes@obr.gov.bi", [address], message(
            "recettes@obr.gov.bi", address, "Avis de recouvrement"))
    assert wait_for_mail(app, address, password, "Avis de recouvrement")

    # unknown recipient, and open relay, refused
    with smtplib.SMTP("127.0.0.1", app.config["MAIL_SMTP_PORT"], timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("x@example.org", ["personne@minisante.gov.bi"],
                          message("x@example.org", "personne@minisante.gov.bi", "?"))
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("x@example.org", ["victime@example.com"],
                          message("x@example.org", "victime@example.com", "spam"))

    # disabled mailbox cannot log in; enabled again it can
    auth.logout()
    auth.login("fp.sante")
    with app.app_context():
        box_id = db.session.scalar(select(Mailbox.id).where(Mailbox.address == address))
    auth.post(f"/portal/mail/{box_id}/disable", page="/portal/mail/")
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(app, address, password)
    auth.post(f"/portal/mail/{box_id}/enable", page="/portal/mail/")
    imap_login(app, address, password).logout()

    # password reset: the old one stops working
    html = auth.post(f"/portal/mail/{box_id}/password", page="/portal/mail/").get_data(
        as_text=True)
    new_password = re.search(r'<code id="password">([^<]+)</code>', html).group(1)
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(app, address, password)
    imap_login(app, address, new_password).logout()

    # delete keeps a final backup of the mailbox store
    auth.post(f"/portal/mail/{box_id}/delete", page="/portal/mail/")
    run_worker(app)
    with app.app_context():
        assert db.session.get(Mailbox, box_id) is None
        assert db.session.scalar(select(Backup).where(Backup.trigger == "final"))
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(app, address, new_password)


def test_quota_refuses_a_message_that_does_not_fit(mail_app, auth):
    app = mail_app
    auth.login("fp.sante")
    limits = app.extensions["policies"].mailbox
    password = create_mailbox(auth, "petite", limits.min_mib)
    address = "petite@minisante.gov.bi"
    big = message("x@example.org", address, "Trop gros",
                  "x" * ((limits.min_mib + 1) * 1024 * 1024))
    with smtplib.SMTP("127.0.0.1", app.config["MAIL_SMTP_PORT"], timeout=30) as smtp:
        with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError,
                            smtplib.SMTPSenderRefused)):
            smtp.sendmail("x@example.org", [address], big)
    imap_login(app, address, password).logout()


@pytest.mark.parametrize("form, message_part", [
    ({"local": "a..b", "quota_mib": "256"}, ""),
    ({"local": "postmaster", "quota_mib": "256"}, ""),
    ({"local": "ok.name", "quota_mib": "999999"}, ""),
    ({"local": "ok.name", "quota_mib": "-1"}, ""),
])
def test_bad_mailboxes_create_nothing(mail_app, auth, form, message_part):
    auth.login("fp.sante")
    page = auth.post("/portal/mail/mailboxes", form, page="/portal/mail/")
    assert page.status_code == 422
    assert 'class="field-error"' in page.get_data(as_text=True)
    with mail_app.app_context():
        assert db.session.scalar(select(Mailbox)) is None


def test_aliases_deliver_and_bad_ones_are_refused(mail_app, auth):
    app = mail_app
    auth.login("fp.sante")
    password = create_mailbox(auth, "secretariat")
    page = auth.post("/portal/mail/aliases", {"local": "contact",
                                              "targets": "secretariat@minisante.gov.bi"},
                     page="/portal/mail/")
    assert page.status_code == 302
    with smtplib.SMTP("127.0.0.1", app.config["MAIL_SMTP_PORT"], timeout=10) as smtp:
        smtp.sendmail("x@example.org", ["contact@minisante.gov.bi"],
                      message("x@example.org", "contact@minisante.gov.bi", "Via alias"))
    assert wait_for_mail(app, "secretariat@minisante.gov.bi", password, "Via alias")
    assert auth.post("/portal/mail/aliases", {"local": "bureau",
                                              "targets": "contact@minisante.gov.bi"},
                     page="/portal/mail/").status_code == 302
    for targets in ("bureau@minisante.gov.bi",  # bureau -> contact -> ... fine; loop below
                    ):
        pass
    loop = auth.post("/portal/mail/aliases", {"local": "contact2",
                                              "targets": "recettes@obr.gov.bi"},
                     page="/portal/mail/")
    assert loop.status_code == 422  # outside the institution
    with app.app_context():
        assert db.session.scalar(select(Mailbox).where(
            Mailbox.address == "contact2@minisante.gov.bi")) is None


def test_deleting_official_mail_archives_every_mailbox(mail_app, auth):
    from controlplane.core.models import Service

    app = mail_app
    auth.login("fp.sante")
    password = create_mailbox(auth, "archivee")
    address = "archivee@minisante.gov.bi"
    with smtplib.SMTP("127.0.0.1", app.config["MAIL_SMTP_PORT"], timeout=10) as smtp:
        smtp.sendmail("x@example.org", [address], message("x@example.org", address, "A garder"))
    assert wait_for_mail(app, address, password, "A garder")
    with app.app_context():
        svc_id = db.session.scalar(select(Service.id).where(
            Service.kind == "mail", Service.name == "minisante.gov.bi"))
    auth.post(f"/services/{svc_id}/actions/delete", page=f"/services/{svc_id}")
    run_worker(app)
    with app.app_context():
        assert db.session.get(Service, svc_id).status == "deleted"
        assert db.session.scalar(select(Mailbox).where(
            Mailbox.address == "archivee@minisante.gov.bi")) is None
        finals = db.session.scalars(select(Backup).where(Backup.service_id == svc_id,
                                                         Backup.trigger == "final")).all()
        assert any("archivee@minisante.gov.bi" in b.path for b in finals)
