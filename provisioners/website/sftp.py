"""SFTP access to one website's content: an sshd that speaks only SFTP, chrooted to the site.

The container ``{prefix}-sftp-{id}`` (image ``provisioners/images/sftp``) mounts the site
volume read-write at ``/srv/sftp/site`` and publishes port 2222 on the host. The login is the
site's service account, ``svc-<id>``, with its password: the container checks it against a
SHA-512 crypt hash kept 0600 in the small ``{prefix}-sftp-{id}-keys`` volume, next to the host
keys (made at the first start, kept so clients never see the key change). Usage::

    website.ensure_website(client, site, proxy)     # first: the site answers
    ensure_sftp(client, SftpSpec(site, "comgov/sftp:bookworm", "127.0.0.1", 22001), password)
    stop_sftp(client, site)
    remove_sftp(client, site)                       # before remove_website (it uses the volume)
"""
from __future__ import annotations

import hashlib
import hmac
import io
import logging
import re
import secrets
import socket
import tarfile
import time
from dataclasses import dataclass

import docker
import docker.errors
from docker.models.containers import Container

from provisioners.docker import runtime
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.website import site as website
from provisioners.website.site import WebsiteSpec

log = logging.getLogger(__name__)

SFTP_PORT = 2222  # inside the container: unprivileged, so no NET_BIND_SERVICE
CHROOT = "/srv/sftp"
CONTENT_DIR = f"{CHROOT}/site"  # the site volume; "/site" as the SFTP client sees it
KEYS_DIR = "/etc/ssh/keys"
HASH_FILE = "password.hash"
ADOPTED_FILE = "content-owner"  # written once the content was handed to the SFTP login
# What sshd needs with cap_drop ALL (each one tested by removing it):
#   SYS_CHROOT  chroot to /run/sshd (pre-auth privilege separation) and to ChrootDirectory
#   SETGID      setgroups/setgid to the sshd user, then to the login's group
#   SETUID      setresuid to the sshd user, then to the login (uid 2000)
#   KILL        the root monitor signals its unprivileged pre-auth child (LoginGraceTime,
#               failed logins); without it idle connections leave children behind
# Nothing else: the host keys, the user tables and /run/sshd are root's own (no
# DAC_OVERRIDE, no CHOWN), there is no PAM (no AUDIT_WRITE) and no terminal, and port 2222
# needs no NET_BIND_SERVICE. no-new-privileges holds: nothing set-uid is ever executed.
CAPABILITIES = ("SYS_CHROOT", "SETUID", "SETGID", "KILL")
TMPFS = {"/run": "rw,noexec,nosuid,nodev,size=1m,mode=0755"}
DEFAULT_LIMITS = Limits(memory_bytes=128 * 1024 * 1024, nano_cpus=500_000_000, pids=64)

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HASH_RE = re.compile(r"^\$6\$([./0-9A-Za-z]{1,16})\$[./0-9A-Za-z]{86}$")


@dataclass(frozen=True)
class SftpSpec:
    """SFTP for one site: where it is published and which image serves it."""

    site: WebsiteSpec
    image: str
    publish_ip: str
    host_port: int
    limits: Limits = DEFAULT_LIMITS
    helper_image: str = website.HELPER_IMAGE  # runs the one-time content adoption


def container_name(site: WebsiteSpec) -> str:
    """Name of the site's SFTP container."""
    return f"{site.prefix}-sftp-{site.service_id}"


def keys_volume_name(site: WebsiteSpec) -> str:
    """The small volume with the host keys and the login's password hash."""
    return f"{site.prefix}-sftp-{site.service_id}-keys"


def login_name(service_id: int) -> str:
    """The SFTP user name: the service account's uid in the directory."""
    return f"svc-{int(service_id)}"


def sftp_url(host: str, port: int, service_id: int) -> str:
    """What a client opens: the content is /site inside the chroot."""
    return f"sftp://{login_name(service_id)}@{host}:{int(port)}/site/"


def _labels(site: WebsiteSpec) -> dict[str, str]:
    return runtime.labels(site.prefix, "sftp", service_id=site.service_id,
                          institution=site.institution, extra=site.extra_labels)


def sftp_container_spec(spec: SftpSpec) -> ContainerSpec:
    """The SFTP container: site volume rw, its own keys volume, one published port."""
    if not 0 < spec.host_port < 65536:
        raise ValueError(f"invalid SFTP host port {spec.host_port!r}")
    site = spec.site
    return ContainerSpec(
        name=container_name(site),
        image=spec.image,
        network=website.network_name(site.prefix, site.institution_id),
        limits=spec.limits,
        labels=_labels(site),
        environment={"SFTP_USER": login_name(site.service_id)},
        volumes={website.volume_name(site): (CONTENT_DIR, "rw"),
                 keys_volume_name(site): (KEYS_DIR, "rw")},
        tmpfs=dict(TMPFS),
        ports={f"{SFTP_PORT}/tcp": (spec.publish_ip, spec.host_port)},
        user="0:0",  # sshd's monitor; sessions run as the login (uid 2000), chrooted
        cap_add=CAPABILITIES,
    )


def ensure_sftp(client: docker.DockerClient, spec: SftpSpec, password: str) -> Container:
    """Converge keys volume, container, password hash and content owner; then run it.

    Call it after :func:`website.ensure_website` (the site volume must exist). A changed
    password restarts sshd; an unchanged one leaves a running container untouched.
    """
    if not password:
        raise ValueError("the SFTP login needs a password")
    site = spec.site
    try:
        site_volume = client.volumes.get(website.volume_name(site))
    except docker.errors.NotFound:
        raise RuntimeError(f"site volume {website.volume_name(site)} is missing: ensure the "
                           "website before its SFTP access") from None
    cspec = sftp_container_spec(spec)
    log.info("event=sftp.ensure service=%s port=%s", site.service_id, spec.host_port)
    runtime.ensure_network(client, cspec.network, runtime.labels(
        site.prefix, "network", institution=site.institution, extra=site.extra_labels))
    runtime.ensure_volume(client, keys_volume_name(site), _labels(site))
    container = runtime.ensure_container(client, cspec, start=False)
    changed = _ensure_password_hash(container, password)
    _ensure_content_owner(client, site, container, site_volume.attrs.get("Labels") or {},
                          helper_image=spec.helper_image)
    container.reload()
    if container.status in ("created", "exited", "dead"):
        container.start()
        log.info("event=sftp.start service=%s", site.service_id)
    elif changed or container.status != "running":  # running with an old hash, restarting
        container.restart(timeout=runtime.STOP_TIMEOUT)
        log.info("event=sftp.restart service=%s reason=password", site.service_id)
    return container


def stop_sftp(client: docker.DockerClient, site: WebsiteSpec) -> None:
    """Stop SFTP access (the site's own stop comes with it)."""
    runtime.stop_container(client, container_name(site))


def remove_sftp(client: docker.DockerClient, site: WebsiteSpec) -> None:
    """Remove the container and its keys volume; removing what is gone succeeds."""
    runtime.remove_container(client, container_name(site))
    runtime.remove_volume(client, keys_volume_name(site))
    log.info("event=sftp.remove service=%s", site.service_id)


def wait_ready(host: str, port: int, timeout: float = 30.0) -> None:
    """Until sshd sends its banner (host keys are made at the first start)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.settimeout(2)
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"no SSH banner on {host}:{port} after {timeout} s ({last!r})")


# --- password hash ------------------------------------------------------------------------

def sha512_crypt(password: str, salt: str | None = None) -> str:
    """glibc's SHA-512 crypt (``$6$``, 5000 rounds): what /etc/shadow and sshd understand.

    Implemented from the published specification (Drepper, "Unix crypt using SHA-256 and
    SHA-512"), because the ``crypt`` module is deprecated and no other is installed.
    """
    if salt is None:
        salt = "".join(secrets.choice(_CRYPT_ALPHABET) for _ in range(16))
    if not salt or len(salt) > 16 or any(c not in _CRYPT_ALPHABET for c in salt):
        raise ValueError("salt must be 1 to 16 characters of [./0-9A-Za-z]")
    key, salt_b = password.encode("utf-8"), salt.encode("ascii")
    digest_b = hashlib.sha512(key + salt_b + key).digest()
    ctx = hashlib.sha512(key + salt_b)
    ctx.update(_repeat(digest_b, len(key)))
    length = len(key)
    while length:
        ctx.update(digest_b if length & 1 else key)
        length >>= 1
    digest_a = ctx.digest()
    p_bytes = _repeat(hashlib.sha512(key * len(key)).digest(), len(key))
    s_bytes = _repeat(hashlib.sha512(salt_b * (16 + digest_a[0])).digest(), len(salt_b))
    current = digest_a
    for rnd in range(5000):
        ctx = hashlib.sha512(p_bytes if rnd & 1 else current)
        if rnd % 3:
            ctx.update(s_bytes)
        if rnd % 7:
            ctx.update(p_bytes)
        ctx.update(current if rnd & 1 else p_bytes)
        current = ctx.digest()
    return f"$6${salt}${_encode(current)}"


def verify_crypt(password: str, hashed: str) -> bool:
    """Whether a ``$6$`` hash (default rounds) is this password's."""
    match = _HASH_RE.match(hashed.strip())
    if match is None:
        return False
    return hmac.compare_digest(sha512_crypt(password, match.group(1)), hashed.strip())


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def _encode(digest: bytes) -> str:
    out = []
    for i in range(21):  # the specification's byte permutation, 3 bytes -> 4 characters
        a, b, c = digest[i], digest[(i + 21) % 63], digest[(i + 42) % 63]
        if i % 3 == 1:
            a, b, c = digest[(i + 21) % 63], digest[(i + 42) % 63], digest[i]
        elif i % 3 == 2:
            a, b, c = digest[(i + 42) % 63], digest[i], digest[(i + 21) % 63]
        out.append(_b64((a << 16) | (b << 8) | c, 4))
    out.append(_b64(digest[63], 2))
    return "".join(out)


def _b64(value: int, count: int) -> str:
    chars = []
    for _ in range(count):
        chars.append(_CRYPT_ALPHABET[value & 0x3F])
        value >>= 6
    return "".join(chars)


# --- files in the keys volume -------------------------------------------------------------

def _ensure_password_hash(container: Container, password: str) -> bool:
    """Write the hash unless the stored one already matches; True when it was (re)written."""
    current = _read_file(container, f"{KEYS_DIR}/{HASH_FILE}")
    if current is not None and verify_crypt(password, current.decode("ascii", "replace")):
        return False
    _write_file(container, HASH_FILE, (sha512_crypt(password) + "\n").encode("ascii"))
    log.info("event=sftp.password_set container=%s", container.name)
    return True


def _ensure_content_owner(client: docker.DockerClient, site: WebsiteSpec,
                          container: Container, volume_labels: dict[str, str],
                          helper_image: str = website.HELPER_IMAGE) -> None:
    """Once per site: content deployed before SFTP existed was root's; hand it to the login.

    A quota volume created with the owner label already belongs to the login (its root by
    mkfs, its files by every deployment): nothing to do, no helper on the provisioning path.
    """
    owner = f"{website.CONTENT_UID}:{website.CONTENT_GID}"
    if site.disk_bytes > 0 and volume_labels.get(website.LABEL_CONTENT_OWNER) == owner:
        return
    marker = f"{owner}\n".encode("ascii")
    if _read_file(container, f"{KEYS_DIR}/{ADOPTED_FILE}") == marker:
        return
    website.adopt_content(client, site, helper_image=helper_image)
    _write_file(container, ADOPTED_FILE, marker)


def _read_file(container: Container, path: str) -> bytes | None:
    try:
        stream, _stat = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        if not member.isfile():
            return None
        return tar.extractfile(member).read()


def _write_file(container: Container, name: str, data: bytes) -> None:
    """A root-owned 0600 file in the keys volume (put_archive works on a stopped container)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        info.uid = info.gid = 0
        tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(KEYS_DIR, buf.getvalue()):
        raise RuntimeError(f"writing {name} into {container.name}:{KEYS_DIR} failed")
