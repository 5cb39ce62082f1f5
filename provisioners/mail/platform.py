"""The one mail platform: a Postfix + Dovecot container that reads everything from OpenLDAP.

It reaches slapd only through the ldapi unix socket, whose directory is bind-mounted
read-only, so the directory is never exposed on a network. Configuration is rendered from
``templates/provisioning/mail/*.j2`` into the ``{prefix}-mail-conf`` volume with
``put_archive`` before the container starts; a changed configuration changes the container's
spec hash, so ``ensure_container`` recreates it. Usage::

    mailboxes.ensure_mail_service_account(cfg, spec.service_password)
    ensure_mail_platform(client, spec)      # run twice: same container
    mailbox_usage(client, spec, "info@minisante.gov.bi")
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import jinja2
from docker.models.containers import Container
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import parse_dn

from provisioners.docker import runtime
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.mail.files import read_tree, write_tree
from provisioners.mail.mailboxes import validate_address, validate_service_password
from provisioners.proxy import validate_hostname

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "provisioning" / "mail"
CONF_DIR = "/etc/comgov-mail"
TLS_DIR = "/run/comgov-mail/tls"
LDAPI_MOUNT = "/run/comgov-ldap"
SPOOL_DIR = "/var/spool/postfix"
VMAIL_DIR = "/var/vmail"
SMTP_PORT = 2525  # unprivileged inside the container: no NET_BIND_SERVICE needed
SUBMISSION_PORT = 2587
IMAP_PORT = 1143
QUOTA_STATUS_PORT = 10030  # Dovecot's policy service, on the container's loopback only
LABEL_CONFIG_HASH = "bi.gov.comgov.mail-config-hash"
READY_TIMEOUT = 90
# Why each capability (everything else stays dropped):
CAPABILITIES = (
    "SETUID", "SETGID",  # both masters start children as postfix, dovecot, dovenull, vmail
    "CHOWN",  # entrypoint and masters hand sockets, queue and state dirs to those users
    "DAC_OVERRIDE",  # root masters bind sockets in postfix's 0700 private/ and reach maildirs
    "KILL",  # masters and `doveadm kick` signal children running under other uids
    "SYS_CHROOT",  # Dovecot chroots its pre-auth imap-login and anvil processes (Postfix: none)
)
TMPFS = {
    "/run": "rw,noexec,nosuid,nodev,size=16m",
    "/tmp": "rw,noexec,nosuid,nodev,size=16m",
    "/var/lib/postfix": "rw,noexec,nosuid,nodev,size=4m",
    "/var/lib/dovecot": "rw,noexec,nosuid,nodev,size=4m",
}
_RELAYHOST_RE = re.compile(r"\[?[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?\]?(?::[0-9]{1,5})?")
_SECRET_FILES = ("postfix/ldap-", "dovecot/ldap-", "tls/key.pem")


@dataclass(frozen=True)
class MailPlatformSpec:
    """Where the mail platform publishes its ports and how it reaches the directory."""

    prefix: str
    image: str
    publish_ip: str
    smtp_port: int  # host port for SMTP (25 in production)
    imap_port: int  # host port for IMAP with STARTTLS (143 in production)
    limits: Limits
    ldapi_dir: str  # host directory holding only slapd's ldapi socket
    base_dn: str
    service_password: str = field(repr=False)  # of mailboxes.service_dn(cfg)
    hostname: str = "mail.gov.bi"
    submission_port: int | None = None  # host port for authenticated submission (587)
    ldapi_socket: str = "socket"
    message_size_limit: int = 25 << 20
    relayhost: str | None = None
    tls_cert_pem: str | None = None
    tls_key_pem: str | None = field(default=None, repr=False)
    extra_labels: dict[str, str] = field(default_factory=dict)


def container_name(prefix: str) -> str:
    """Name of the mail platform container."""
    return f"{prefix}-mail"


def network_name(prefix: str) -> str:
    """The platform's own network (tenant networks never include it)."""
    return f"{prefix}-mail-net"


def volume_names(prefix: str) -> dict[str, str]:
    """Configuration, queue and mailbox volumes."""
    return {"conf": f"{prefix}-mail-conf", "spool": f"{prefix}-mail-spool",
            "vmail": f"{prefix}-mail-vmail"}


# --- validation and rendering ----------------------------------------------------------------
def _check_port(name: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{name} must be a TCP port (1-65535), not {port!r}")
    return port


def validate_spec(spec: MailPlatformSpec) -> None:
    """Refuse anything that would be pasted unchecked into Postfix or Dovecot syntax."""
    ipaddress.ip_address(spec.publish_ip)  # raises ValueError
    ports = [_check_port("smtp_port", spec.smtp_port), _check_port("imap_port", spec.imap_port)]
    if spec.submission_port is not None:
        ports.append(_check_port("submission_port", spec.submission_port))
    if len(set(ports)) != len(ports):
        raise ValueError("smtp, imap and submission ports must differ")
    validate_hostname(spec.hostname)
    if spec.hostname.count(".") < 1:
        raise ValueError(f"mail hostname must be fully qualified: {spec.hostname!r}")
    if spec.relayhost is not None and _RELAYHOST_RE.fullmatch(spec.relayhost) is None:
        raise ValueError(f"relayhost must look like [smtp.example.bi]:25, not {spec.relayhost!r}")
    validate_service_password(spec.service_password)
    if not isinstance(spec.base_dn, str) or any(c in spec.base_dn for c in "\n\r\"\\()*#"):
        raise ValueError(f"unsupported base DN {spec.base_dn!r}")
    try:
        parse_dn(spec.base_dn)
    except LDAPException as exc:
        raise ValueError(f"invalid base DN {spec.base_dn!r}") from exc
    if not Path(spec.ldapi_dir).is_absolute() or "/" in spec.ldapi_socket \
            or not spec.ldapi_socket:
        raise ValueError("ldapi_dir must be an absolute host path and ldapi_socket a file name")
    if not 1 << 20 <= spec.message_size_limit <= 1 << 30:
        raise ValueError("message_size_limit must be between 1 MiB and 1 GiB")
    if (spec.tls_cert_pem is None) != (spec.tls_key_pem is None):
        raise ValueError("give both tls_cert_pem and tls_key_pem, or neither")
    if spec.tls_cert_pem is not None and ("BEGIN CERTIFICATE" not in spec.tls_cert_pem
                                          or "PRIVATE KEY" not in (spec.tls_key_pem or "")):
        raise ValueError("tls_cert_pem / tls_key_pem must be PEM certificate and key")


def _environment() -> jinja2.Environment:
    # autoescape is off: the output is Postfix/Dovecot syntax, and every value is validated.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def render_config(spec: MailPlatformSpec) -> dict[str, str]:
    """Every file of the configuration volume, relative path -> text."""
    validate_spec(spec)
    env = _environment()
    uri = "ldapi://" + urllib.parse.quote(f"{LDAPI_MOUNT}/{spec.ldapi_socket}", safe="")
    ldap = {"ldap_uri": uri, "bind_dn": f"cn=mail,ou=system,{spec.base_dn}",
            "bind_pw": spec.service_password, "search_base": f"ou=institutions,{spec.base_dn}"}
    common = {"hostname": spec.hostname, "conf_dir": CONF_DIR, "tls_dir": TLS_DIR,
              "quota_status_port": QUOTA_STATUS_PORT}
    maps = {
        "domains": ("mail domains", "(&(objectClass=comgovMailDomain)(mailDomain=%s))",
                    "mailDomain"),
        "mailboxes": ("enabled mailboxes (also: who may send as them)",
                      "(&(objectClass=comgovMailbox)(mail=%s)(mailEnabled=TRUE))", "mail"),
        "aliases": ("aliases", "(&(objectClass=comgovMailAlias)(mail=%s))", "mailAliasTarget"),
    }
    files = {
        "postfix/main.cf": env.get_template("main.cf.j2").render(
            **common, message_size_limit=spec.message_size_limit,
            relayhost=spec.relayhost or ""),
        "postfix/master.cf": env.get_template("master.cf.j2").render(
            smtp_port=SMTP_PORT, submission_port=SUBMISSION_PORT),
        "dovecot/dovecot.conf": env.get_template("dovecot.conf.j2").render(
            **common, imap_port=IMAP_PORT),
    }
    for name, (purpose, flt, attr) in maps.items():
        files[f"postfix/ldap-{name}.cf"] = env.get_template("ldap-map.cf.j2").render(
            **ldap, purpose=purpose, query_filter=flt, result_attribute=attr)
    for name, auth_bind in (("passdb", True), ("userdb", False)):
        files[f"dovecot/ldap-{name}.conf.ext"] = env.get_template(
            "dovecot-ldap.conf.ext.j2").render(**ldap, purpose=name, auth_bind=auth_bind)
    if spec.tls_cert_pem is not None:
        files["tls/cert.pem"] = spec.tls_cert_pem
        files["tls/key.pem"] = spec.tls_key_pem or ""
    return files


def config_hash(files: dict[str, str]) -> str:
    """sha256 over the rendered files, stored as a label so a change recreates the container."""
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def mail_container_spec(spec: MailPlatformSpec, files: dict[str, str]) -> ContainerSpec:
    """The hardened container spec of the platform."""
    vols = volume_names(spec.prefix)
    ports = {f"{SMTP_PORT}/tcp": (spec.publish_ip, spec.smtp_port),
             f"{IMAP_PORT}/tcp": (spec.publish_ip, spec.imap_port)}
    if spec.submission_port is not None:
        ports[f"{SUBMISSION_PORT}/tcp"] = (spec.publish_ip, spec.submission_port)
    obj_labels = runtime.labels(spec.prefix, "mail", extra=spec.extra_labels)
    return ContainerSpec(
        name=container_name(spec.prefix), image=spec.image, network=network_name(spec.prefix),
        limits=spec.limits, labels={**obj_labels, LABEL_CONFIG_HASH: config_hash(files)},
        environment={"MAIL_HOSTNAME": spec.hostname},
        volumes={vols["conf"]: (CONF_DIR, "rw"), vols["spool"]: (SPOOL_DIR, "rw"),
                 vols["vmail"]: (VMAIL_DIR, "rw"),
                 str(Path(spec.ldapi_dir)): (LDAPI_MOUNT, "ro")},
        tmpfs=dict(TMPFS), ports=ports, cap_add=CAPABILITIES,
    )


# --- public API ------------------------------------------------------------------------------
def ensure_mail_platform(client: docker.DockerClient, spec: MailPlatformSpec) -> Container:
    """Converge network, volumes, configuration and container; return once SMTP and IMAP answer."""
    files = render_config(spec)  # validates the spec
    if not Path(spec.ldapi_dir).is_dir():
        raise ValueError(f"ldapi_dir {spec.ldapi_dir} does not exist (is slapd started?)")
    cspec = mail_container_spec(spec, files)
    obj_labels = runtime.labels(spec.prefix, "mail", extra=spec.extra_labels)
    runtime.ensure_network(client, cspec.network, obj_labels)
    for volume in volume_names(spec.prefix).values():
        runtime.ensure_volume(client, volume, obj_labels)
    container = runtime.ensure_container(client, cspec, start=False)
    current = dict(read_tree(container, CONF_DIR))
    drifted = {p for p, text in files.items() if current.get(p) != text}
    if drifted:
        write_tree(container, CONF_DIR, files,
                   secret=lambda p: p.startswith(_SECRET_FILES))
        log.info("event=mail.config.write container=%s files=%d", container.name, len(drifted))
    container.reload()
    if container.status == "running" and drifted:
        container.restart(timeout=runtime.STOP_TIMEOUT)  # hand-edited files: re-assert ours
        log.info("event=mail.restart container=%s reason=config_drift", container.name)
    elif container.status != "running":
        container.start()
        log.info("event=mail.start container=%s", container.name)
    wait_ready(container, spec)
    return container


def wait_ready(container: Container, spec: MailPlatformSpec,
               timeout: float = READY_TIMEOUT) -> None:
    """Poll the published ports until both banners arrive (bounded), or fail with the logs."""
    host = "127.0.0.1" if ipaddress.ip_address(spec.publish_ip).is_unspecified \
        else spec.publish_ip
    deadline = time.monotonic() + timeout
    pending = {spec.smtp_port: b"220 ", spec.imap_port: b"* OK"}
    while pending and time.monotonic() < deadline:
        for port, greeting in list(pending.items()):
            if _banner(host, port).startswith(greeting):
                del pending[port]
        if pending:
            container.reload()
            if container.status in ("exited", "dead"):
                break
            time.sleep(0.25)
    if pending:
        tail = container.logs(tail=40).decode("utf-8", "replace")
        raise RuntimeError(f"mail platform {container.name} not ready (ports "
                           f"{sorted(pending)} silent, status {container.status}):\n{tail}")
    log.info("event=mail.ready container=%s", container.name)


def _banner(host: str, port: int) -> bytes:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64)
    except OSError:
        return b""


def remove_mail_platform(client: docker.DockerClient, spec: MailPlatformSpec,
                         keep_mail: bool = False) -> None:
    """Remove container, network and volumes (the mailboxes' volume too unless keep_mail)."""
    runtime.remove_container(client, container_name(spec.prefix))
    for kind, volume in volume_names(spec.prefix).items():
        if not (keep_mail and kind in ("vmail", "spool")):
            runtime.remove_volume(client, volume)
    runtime.remove_network(client, network_name(spec.prefix))
    log.info("event=mail.remove prefix=%s keep_mail=%s", spec.prefix, keep_mail)


def mailbox_usage(client: docker.DockerClient, spec: MailPlatformSpec, address: str) -> int:
    """Bytes a mailbox uses, as Dovecot's quota counts them (what the quota is checked against)."""
    address = validate_address(address)
    container = client.containers.get(container_name(spec.prefix))
    # "mailbox status -t vsize" sums the virtual sizes the quota (quota_vsizes=yes) counts, in
    # bytes; "quota get" would round to KiB.
    result = container.exec_run(["doveadm", "-f", "tab", "mailbox", "status", "-u", address,
                                 "-t", "vsize", "*"], demux=True)
    out = (result.output[0] or b"").decode("utf-8", "replace").split()
    if result.exit_code != 0 or len(out) != 2 or out[0] != "vsize" or not out[1].isdigit():
        err = (result.output[1] or b"").decode("utf-8", "replace").strip()
        raise RuntimeError(f"doveadm mailbox status {address} failed ({result.exit_code}): "
                           f"{err or out}")
    return int(out[1])


def kick_mailbox(client: docker.DockerClient, spec: MailPlatformSpec, address: str) -> None:
    """Close a mailbox's open IMAP sessions (after disable_mailbox or a password change)."""
    address = validate_address(address)
    container = client.containers.get(container_name(spec.prefix))
    result = container.exec_run(["doveadm", "kick", address], demux=True)
    # doveadm kick exits 68 (EX_NOUSER) when nobody was connected: that is success too.
    if result.exit_code not in (0, 68):
        err = (result.output[1] or b"").decode("utf-8", "replace").strip()
        raise RuntimeError(f"doveadm kick {address} failed ({result.exit_code}): {err}")
    log.info("event=mail.mailbox.kick address=%s", address)


def purge_mailbox_storage(client: docker.DockerClient, spec: MailPlatformSpec,
                          address: str) -> None:
    """Delete a removed mailbox's maildir; a missing one is success."""
    address = validate_address(address)  # no '/', no '..': the path stays under /var/vmail
    local, domain = address.split("@")
    container = client.containers.get(container_name(spec.prefix))
    result = container.exec_run(["rm", "-rf", "--one-file-system", "--",
                                 f"{VMAIL_DIR}/{domain}/{local}"])
    if result.exit_code != 0:
        raise RuntimeError(f"purging {address} failed: {result.output!r}")
    log.info("event=mail.mailbox.purge address=%s", address)
