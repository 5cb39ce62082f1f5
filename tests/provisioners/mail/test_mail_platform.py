"""The mail platform end to end: real slapd, real Postfix/Dovecot container, smtplib and imaplib."""
from __future__ import annotations

import email.message
import imaplib
import secrets
import smtplib
import ssl
import statistics
import time

import ldap3
import pytest

from devtools import devstack
from provisioners.directory import tree as directory
from provisioners.docker.runtime import Limits
from provisioners.images import build as images
from provisioners.mail import mailboxes as mb
from provisioners.mail import platform as mail

pytestmark = pytest.mark.docker

TEST_LABELS = {"bi.gov.comgov.test": "1"}
LIMITS = Limits(memory_bytes=256 << 20, nano_cpus=1_000_000_000, pids=256)
A, DOMAIN_A = "MINISANTE", "minisante.gov.bi"
B, DOMAIN_B = "OBR", "obr.gov.bi"
NAMES = {A: "Ministère de la Santé Publique", B: "Office Burundais des Recettes"}
PW = "Mailbox-pass-2026!"
WAIT = 20.0
ROUNDS = 5


def _tls() -> ssl.SSLContext:
    # The platform runs with a self-signed certificate in tests.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mail_image(docker_client, tmp_path_factory) -> str:
    images.ensure_base_image(docker_client, tmp_path_factory.mktemp("base"))  # reuse if there
    images.ensure_image(docker_client, "mail")
    return images.image_tag("mail")


@pytest.fixture(scope="module")
def service_password() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def mail_dirs(ldap_config, service_password):
    """Two institutions with mail domains, and the platform's service account."""
    for acronym, name in NAMES.items():
        directory.ensure_institution(ldap_config, acronym, name)
    mb.ensure_mail_service_account(ldap_config, service_password)
    mb.ensure_mail_domain(ldap_config, A, DOMAIN_A)
    mb.ensure_mail_domain(ldap_config, B, DOMAIN_B)
    yield ldap_config
    for acronym in NAMES:
        mb.remove_mail_domain(ldap_config, acronym)


@pytest.fixture(scope="module")
def platform(docker_client, docker_prefix, mail_image, mail_dirs, session_dir, service_password):
    """One mail platform for the module, on free ports of 127.0.0.1."""
    ldapi = devstack.default_ldapi_path(session_dir / "slapd")  # the conftest slapd's socket
    spec = mail.MailPlatformSpec(
        prefix=docker_prefix, image=mail_image, publish_ip="127.0.0.1",
        smtp_port=devstack.free_port(), imap_port=devstack.free_port(),
        submission_port=devstack.free_port(), limits=LIMITS, ldapi_dir=str(ldapi.parent),
        base_dn=mail_dirs.base_dn, service_password=service_password,
        extra_labels=TEST_LABELS)
    started = time.monotonic()
    mail.ensure_mail_platform(docker_client, spec)
    print(f"\nmail platform ready in {time.monotonic() - started:.1f}s")
    yield spec
    mail.remove_mail_platform(docker_client, spec)
    mail.remove_mail_platform(docker_client, spec)  # removing what is gone succeeds
    assert not docker_client.containers.list(all=True, filters={"name": f"{docker_prefix}-mail"})


# --- protocol helpers ------------------------------------------------------------------------
def message(sender: str, to: str, subject: str, body: str = "Bonjour.\n") -> bytes:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(body)
    return msg.as_bytes()


def smtp_send(spec, sender: str, recipients: list[str], data: bytes) -> dict:
    """Unauthenticated SMTP on the public port, as another mail server would do."""
    with smtplib.SMTP("127.0.0.1", spec.smtp_port, timeout=10) as smtp:
        return smtp.sendmail(sender, recipients, data)  # sends SIZE= (the server offers SIZE)


def submit(spec, address: str, password: str, recipients: list[str], data: bytes) -> dict:
    """Authenticated submission (STARTTLS + AUTH) as a mailbox owner's mail client does."""
    with smtplib.SMTP("127.0.0.1", spec.submission_port, timeout=10) as smtp:
        smtp.starttls(context=_tls())
        smtp.login(address, password)
        return smtp.sendmail(address, recipients, data)


def imap_login(spec, address: str, password: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", spec.imap_port, timeout=10)
    try:
        imap.starttls(ssl_context=_tls())
        imap.login(address, password)
    except Exception:
        imap.shutdown()
        raise
    return imap


def can_login(spec, address: str, password: str) -> bool:
    try:
        imap_login(spec, address, password).logout()
        return True
    except imaplib.IMAP4.error:
        return False


def wait_for_subject(spec, address: str, password: str, subject: str) -> bytes:
    """Poll the INBOX over IMAP (bounded) until a message with that subject arrives."""
    deadline = time.monotonic() + WAIT
    while True:
        imap = imap_login(spec, address, password)
        try:
            imap.select("INBOX")
            _, data = imap.search(None, "SUBJECT", f'"{subject}"')
            if data[0]:
                _, fetched = imap.fetch(data[0].split()[-1], "(RFC822)")
                return fetched[0][1]
        finally:
            imap.logout()
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject!r} did not reach {address} within {WAIT}s")
        time.sleep(0.2)


def refused_code(exc: smtplib.SMTPRecipientsRefused, address: str) -> int:
    return exc.recipients[address][0]


# --- pure checks (no services) ---------------------------------------------------------------
def test_address_validation():
    assert mb.validate_address("Info.Sante@MiniSante.gov.bi") == "info.sante@minisante.gov.bi"
    for bad in ("no-at-sign", "a@b@c.bi", "../x@minisante.gov.bi", "a..b@minisante.gov.bi",
                ".a@minisante.gov.bi", "a b@minisante.gov.bi", "a/b@minisante.gov.bi",
                "a@localhost", "a@-x.gov.bi", "", None):
        with pytest.raises(ValueError):
            mb.validate_address(bad)


def test_find_alias_loop():
    assert mb.find_alias_loop({"a": ["b"], "b": ["c"]}, "a") is None
    assert mb.find_alias_loop({"a": ["b"], "b": ["c"], "c": ["a"]}, "a") == ["a", "b", "c", "a"]
    assert mb.find_alias_loop({"a": ["b", "c"], "c": ["d"], "d": ["c"]}, "a") == ["c", "d", "c"]


def test_render_refuses_unsafe_values(tmp_path):
    good = dict(prefix="p", image="i", publish_ip="127.0.0.1", smtp_port=2525, imap_port=1143,
                limits=LIMITS, ldapi_dir=str(tmp_path), base_dn="dc=gov,dc=bi",
                service_password="x" * 24)
    files = mail.render_config(mail.MailPlatformSpec(**good))
    assert "reject_unauth_destination" in files["postfix/main.cf"]
    assert "auth_bind = yes" in files["dovecot/ldap-passdb.conf.ext"]
    assert "ldapi://%2Frun%2Fcomgov-ldap%2Fsocket" in files["postfix/ldap-aliases.cf"]
    assert "x" * 24 not in repr(mail.MailPlatformSpec(**good))
    for change in ({"service_password": "short"}, {"service_password": "x" * 20 + "\nbad=1"},
                   {"hostname": "mail.gov.bi\nrelayhost = evil"}, {"publish_ip": "nowhere"},
                   {"base_dn": 'dc=gov,dc=bi"'}, {"smtp_port": 1143}, {"ldapi_dir": "rel"},
                   {"relayhost": "evil\nx"}, {"tls_cert_pem": "x"}):
        with pytest.raises(ValueError):
            mail.render_config(mail.MailPlatformSpec(**{**good, **change}))


# --- directory side --------------------------------------------------------------------------
def test_slapd_has_schema_and_ldapi(session_dir, ldap_config):
    conf = (session_dir / "slapd" / "slapd.conf").read_text()
    assert "comgov.schema" in conf
    assert devstack.default_ldapi_path(session_dir / "slapd").is_socket()


def test_service_account_reads_routing_not_secrets(mail_dirs, service_password):
    cfg = mail_dirs
    assert mb.service_dn(cfg) == devstack.mail_service_dn(cfg.base_dn)  # the ACL's subject
    mb.ensure_mailbox(cfg, A, "acl.check@minisante.gov.bi", PW, 1 << 20)
    server = ldap3.Server(cfg.url, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, mb.service_dn(cfg), service_password, auto_bind=True)
    try:
        conn.search(f"ou=institutions,{cfg.base_dn}", "(mail=acl.check@minisante.gov.bi)",
                    attributes=["mail", "mailQuotaBytes", "userPassword"])
        (entry,) = [r for r in conn.response if r["type"] == "searchResEntry"]
        assert entry["attributes"]["mailQuotaBytes"] == ["1048576"]
        assert not entry["attributes"].get("userPassword")
        conn.search(cfg.base_dn, "(objectClass=groupOfNames)", attributes=["cn"])
        assert [r for r in conn.response if r["type"] == "searchResEntry"] == []
    finally:
        conn.unbind()
        mb.remove_mailbox(cfg, A, "acl.check@minisante.gov.bi")


def test_mail_domain_rules(mail_dirs):
    cfg = mail_dirs
    assert mb.mail_domain(cfg, A) == DOMAIN_A
    assert mb.ensure_mail_domain(cfg, A, DOMAIN_A) == mb.mail_container_dn(cfg, A)  # idempotent
    with pytest.raises(ValueError, match="already belongs"):
        mb.ensure_mail_domain(cfg, B, DOMAIN_A)
    with pytest.raises(ValueError, match="unknown institution"):
        mb.ensure_mail_domain(cfg, "NOSUCH", "nosuch.gov.bi")
    with pytest.raises(ValueError, match="not in MINISANTE's mail domain"):
        mb.ensure_mailbox(cfg, A, "x@obr.gov.bi", PW, 1 << 20)
    with pytest.raises(ValueError, match="quota_bytes"):
        mb.ensure_mailbox(cfg, A, "x@minisante.gov.bi", PW, 0)


# --- protocols -------------------------------------------------------------------------------
def _first_login_seconds(spec, address: str, create) -> float:
    """Time from the LDAP write to the first IMAP login that succeeds (bounded poll)."""
    started = time.perf_counter()
    create()
    while not can_login(spec, address, PW):
        if time.perf_counter() - started > WAIT:
            raise AssertionError(f"{address} could not log in within {WAIT}s")
        time.sleep(0.005)
    return time.perf_counter() - started


def test_latency_from_ldap_add_to_first_login(platform, mail_dirs, capsys):
    """Benchmark for the lead: ensure_mailbox vs a bare ldap3 add, each up to the first login."""
    cfg = mail_dirs
    addr, warm = "mesure@minisante.gov.bi", "chauffe@minisante.gov.bi"
    # Runs before any test that fails a login: Dovecot delays every login from an address that
    # recently failed one (auth penalty, up to 15 s), and here all clients share the Docker
    # gateway's address. Warm the login path once with a login that succeeds.
    mb.ensure_mailbox(cfg, A, warm, PW, 1 << 20)
    assert can_login(platform, warm, PW)

    def direct_add() -> None:
        conn = directory.admin_connection(cfg)
        try:
            assert conn.add(f"mail={addr},{mb.mail_container_dn(cfg, A)}",
                            ["top", "comgovMailbox"],
                            {"mail": addr, "mailQuotaBytes": str(1 << 20), "mailEnabled": "TRUE",
                             "userPassword": directory.hash_password(PW)}), conn.result
        finally:
            conn.unbind()

    results: dict[str, list[float]] = {"ensure_mailbox": [], "ldap3 add": [], "login only": []}
    for _ in range(ROUNDS):
        for name, create in (("ensure_mailbox",
                              lambda: mb.ensure_mailbox(cfg, A, addr, PW, 1 << 20)),
                             ("ldap3 add", direct_add)):
            results[name].append(_first_login_seconds(platform, addr, create))
            mb.remove_mailbox(cfg, A, addr)
        results["login only"].append(_first_login_seconds(platform, warm, lambda: None))
    mb.remove_mailbox(cfg, A, warm)
    summary = "; ".join(f"{name} -> first IMAP login median {statistics.median(v) * 1000:.1f} ms "
                        f"max {max(v) * 1000:.1f} ms" for name, v in results.items())
    with capsys.disabled():
        print(f"\nmail latency ({ROUNDS} rounds, STARTTLS + LOGIN included): {summary}")
    assert all(max(v) < WAIT for v in results.values())


def test_smtp_delivery_then_imap_read_with_mailbox_password(platform, mail_dirs, docker_client):
    addr = "accueil@minisante.gov.bi"
    mb.ensure_mailbox(mail_dirs, A, addr, PW, 10 << 20)
    assert smtp_send(platform, "partner@example.org", [addr],
                     message("partner@example.org", addr, "Premier message")) == {}
    raw = wait_for_subject(platform, addr, PW, "Premier message")
    assert b"Bonjour." in raw
    assert not can_login(platform, addr, "wrong-password")
    used = mail.mailbox_usage(docker_client, platform, addr)
    assert len(raw) // 2 < used < 10 << 20
    assert addr in [m.address for m in mb.list_mailboxes(mail_dirs, A)]
    mb.remove_mailbox(mail_dirs, A, addr)
    mail.purge_mailbox_storage(docker_client, platform, addr)
    mail.purge_mailbox_storage(docker_client, platform, addr)  # already gone: success
    container = docker_client.containers.get(mail.container_name(platform.prefix))
    assert container.exec_run(["test", "-e", "/var/vmail/minisante.gov.bi/accueil"]).exit_code == 1


def test_mail_between_institutions(platform, mail_dirs):
    alice, bob = "alice@minisante.gov.bi", "bob@obr.gov.bi"
    mb.ensure_mailbox(mail_dirs, A, alice, PW, 10 << 20)
    mb.ensure_mailbox(mail_dirs, B, bob, PW, 10 << 20)
    submit(platform, alice, PW, [bob], message(alice, bob, "Entre institutions"))
    assert b"From: alice@minisante.gov.bi" in wait_for_subject(platform, bob, PW,
                                                               "Entre institutions")
    smtp_send(platform, "partner@example.org", [alice], message("p@example.org", alice, "Ext"))
    wait_for_subject(platform, alice, PW, "Ext")
    # Nobody outside may pose as a mailbox of the platform (no login, so no ownership).
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        smtp_send(platform, alice, [bob], message(alice, bob, "Usurpation"))
    assert refused_code(exc.value, bob) == 553
    # And one mailbox owner may not send as another.
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        with smtplib.SMTP("127.0.0.1", platform.submission_port, timeout=10) as smtp:
            smtp.starttls(context=_tls())
            smtp.login(bob, PW)
            smtp.sendmail(alice, [bob], message(alice, bob, "Usurpation 2"))


def test_message_over_quota_is_refused_at_rcpt(platform, mail_dirs, docker_client):
    addr = "petit@minisante.gov.bi"
    mb.ensure_mailbox(mail_dirs, A, addr, PW, 40_000)
    smtp_send(platform, "p@example.org", [addr], message("p@example.org", addr, "Petit"))
    wait_for_subject(platform, addr, PW, "Petit")
    big = message("p@example.org", addr, "Trop gros", "x" * 60_000 + "\n")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        smtp_send(platform, "p@example.org", [addr], big)
    assert refused_code(exc.value, addr) == 552
    assert b"full" in exc.value.recipients[addr][1]
    assert mail.mailbox_usage(docker_client, platform, addr) < 40_000
    # Raising the quota in LDAP lets the same message in at once.
    mb.ensure_mailbox(mail_dirs, A, addr, PW, 200_000)
    smtp_send(platform, "p@example.org", [addr], big)
    wait_for_subject(platform, addr, PW, "Trop gros")


def test_disabled_mailbox_cannot_log_in(platform, mail_dirs, docker_client):
    addr = "parti@minisante.gov.bi"
    mb.ensure_mailbox(mail_dirs, A, addr, PW, 1 << 20)
    session = imap_login(platform, addr, PW)
    mb.disable_mailbox(mail_dirs, A, addr)
    assert not can_login(platform, addr, PW)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:  # nor receive new mail
        smtp_send(platform, "p@example.org", [addr], message("p@example.org", addr, "Non"))
    assert refused_code(exc.value, addr) == 550
    mail.kick_mailbox(docker_client, platform, addr)  # and the open session is closed
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        for _ in range(50):
            session.noop()
            time.sleep(0.1)
    server = ldap3.Server(mail_dirs.url, get_info=ldap3.NONE)  # slapd's ACL refuses it too
    dn = f"mail={addr},{mb.mail_container_dn(mail_dirs, A)}"
    assert not ldap3.Connection(server, dn, PW).bind()
    mb.enable_mailbox(mail_dirs, A, addr)
    assert ldap3.Connection(server, dn, PW).bind()
    assert can_login(platform, addr, PW)
    mb.set_mailbox_password(mail_dirs, A, addr, "New-pass-2026")
    assert not can_login(platform, addr, PW)
    assert can_login(platform, addr, "New-pass-2026")
    assert [m.enabled for m in mb.list_mailboxes(mail_dirs, A) if m.address == addr] == [True]


def test_unknown_recipient_is_refused(platform, mail_dirs):
    addr = "personne@minisante.gov.bi"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        smtp_send(platform, "p@example.org", [addr], message("p@example.org", addr, "?"))
    assert refused_code(exc.value, addr) == 550


def test_no_open_relay(platform, mail_dirs):
    outside = "someone@example.org"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
        smtp_send(platform, "p@example.net", [outside], message("p@example.net", outside, "R"))
    assert refused_code(exc.value, outside) == 554
    assert b"Relay access denied" in exc.value.recipients[outside][1]


def test_alias_delivers_to_its_targets(platform, mail_dirs):
    cfg = mail_dirs
    one, two = "un@minisante.gov.bi", "deux@minisante.gov.bi"
    for addr in (one, two):
        mb.ensure_mailbox(cfg, A, addr, PW, 10 << 20)
    mb.ensure_alias(cfg, A, "equipe@minisante.gov.bi", [one, two])
    mb.ensure_alias(cfg, A, "contact@minisante.gov.bi", ["equipe@minisante.gov.bi"])
    smtp_send(platform, "p@example.org", ["contact@minisante.gov.bi"],
              message("p@example.org", "contact@minisante.gov.bi", "Pour l'equipe"))
    for addr in (one, two):
        wait_for_subject(platform, addr, PW, "Pour l'equipe")
    aliases = {a.address: a.targets for a in mb.list_aliases(cfg, A)}
    assert aliases["equipe@minisante.gov.bi"] == (two, one)
    # Removing a mailbox takes it out of its aliases; an alias left empty goes as well.
    mb.remove_mailbox(cfg, A, two)
    mb.remove_mailbox(cfg, A, two)  # already gone: success
    assert {a.address: a.targets for a in mb.list_aliases(cfg, A)}[
        "equipe@minisante.gov.bi"] == (one,)
    mb.remove_mailbox(cfg, A, one)
    assert not {"equipe@minisante.gov.bi", "contact@minisante.gov.bi"} & {
        a.address for a in mb.list_aliases(cfg, A)}


def test_alias_validation(mail_dirs):
    cfg = mail_dirs
    mb.ensure_mailbox(cfg, A, "cible@minisante.gov.bi", PW, 1 << 20)
    mb.ensure_mailbox(cfg, B, "autre@obr.gov.bi", PW, 1 << 20)
    mb.ensure_alias(cfg, A, "a1@minisante.gov.bi", ["cible@minisante.gov.bi"])
    mb.ensure_alias(cfg, A, "a2@minisante.gov.bi", ["a1@minisante.gov.bi"])
    with pytest.raises(ValueError, match="alias loop: a1@minisante.gov.bi -> a2@"):
        mb.ensure_alias(cfg, A, "a1@minisante.gov.bi", ["a2@minisante.gov.bi"])
    with pytest.raises(ValueError, match="itself"):
        mb.ensure_alias(cfg, A, "a3@minisante.gov.bi", ["a3@minisante.gov.bi"])
    with pytest.raises(ValueError, match="not a mailbox or alias of MINISANTE"):
        mb.ensure_alias(cfg, A, "a3@minisante.gov.bi", ["autre@obr.gov.bi"])
    with pytest.raises(ValueError, match="not a mailbox or alias of MINISANTE"):
        mb.ensure_alias(cfg, A, "a3@minisante.gov.bi", ["absent@minisante.gov.bi"])
    with pytest.raises(ValueError, match="not in MINISANTE's mail domain"):
        mb.ensure_alias(cfg, A, "a3@obr.gov.bi", ["cible@minisante.gov.bi"])
    with pytest.raises(ValueError, match="already a mailbox"):
        mb.ensure_alias(cfg, A, "cible@minisante.gov.bi", ["a1@minisante.gov.bi"])
    with pytest.raises(ValueError, match="already an alias"):
        mb.ensure_mailbox(cfg, A, "a1@minisante.gov.bi", PW, 1 << 20)
    with pytest.raises(ValueError, match="a list"):
        mb.ensure_alias(cfg, A, "a3@minisante.gov.bi", "cible@minisante.gov.bi")
    mb.remove_alias(cfg, A, "a1@minisante.gov.bi")  # a2 pointed only there: it goes too
    assert mb.list_aliases(cfg, A) == [] or all(
        a.address not in ("a1@minisante.gov.bi", "a2@minisante.gov.bi")
        for a in mb.list_aliases(cfg, A))
    mb.remove_alias(cfg, A, "a1@minisante.gov.bi")
    for inst, addr in ((A, "cible@minisante.gov.bi"), (B, "autre@obr.gov.bi")):
        mb.remove_mailbox(cfg, inst, addr)


def test_ensure_is_convergent(platform, docker_client):
    before = docker_client.containers.get(mail.container_name(platform.prefix))
    after = mail.ensure_mail_platform(docker_client, platform)
    assert after.id == before.id and after.status == "running"
    assert set(after.attrs["HostConfig"]["CapAdd"]) == set(mail.CAPABILITIES)
    assert after.attrs["HostConfig"]["ReadonlyRootfs"] is True
    binds = {m["Destination"]: m for m in after.attrs["Mounts"]}
    assert binds[mail.LDAPI_MOUNT]["RW"] is False
