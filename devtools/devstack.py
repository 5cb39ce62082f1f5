"""Start the real backing services (dockerd, Redis, slapd, the image registry) so tests and
`make run` need no mocks."""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import ldap3
import redis
import requests
from ldap3.core.exceptions import LDAPException

from provisioners.registry import configuration as registry_config
from provisioners.registry import signing as registry_signing

log = logging.getLogger(__name__)

DOCKER_INFO_TIMEOUT = 15
SLAPD_MODULE_PATH = "/usr/lib/ldap"
SLAPD_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
# Our own schema (mail attributes), copied into the work directory so slapd.conf never points
# into a source tree that may move.
COMGOV_SCHEMA = Path(__file__).resolve().parent.parent / "provisioners" / "directory" / "comgov.schema"
# The socket sits alone in its own directory: only that directory is bind-mounted into the mail
# platform, never the work directory with slapd.conf and the database.
LDAPI_DIR = "ldapi"
LDAPI_SOCKET = "socket"
MAX_SOCKET_PATH = 107


def free_port() -> int:
    """Ask the kernel for an unused TCP port so parallel sessions do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_available() -> bool:
    """Tell whether a Docker Engine answers, without hanging on a dead socket."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(
            ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=DOCKER_INFO_TIMEOUT, check=False,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return result.returncode == 0


def ensure_dockerd(log_path: Path) -> subprocess.Popen | None:
    """Start dockerd only when no engine answers, because CI machines boot without one."""
    if docker_available():
        return None
    if shutil.which("dockerd") is None:
        raise RuntimeError("docker info fails and the dockerd binary is not installed")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.info("event=devstack.dockerd.start log=%s", log_path)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            ["dockerd"], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"dockerd exited with code {proc.returncode}; log tail:\n{_tail(log_path)}"
            )
        if docker_available():
            log.info("event=devstack.dockerd.ready pid=%d", proc.pid)
            return proc
        time.sleep(1)
    stop_process(proc)
    raise RuntimeError(f"dockerd did not answer within 60 s; log tail:\n{_tail(log_path)}")


def start_redis(workdir: Path, port: int, persistent: bool = False) -> subprocess.Popen:
    """Run a private redis-server in the foreground and return once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "redis.log"
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
        "--save", "", "--daemonize", "no",
        "--appendonly", "yes" if persistent else "no",
    ]
    log.info("event=devstack.redis.start port=%d dir=%s persistent=%s", port, workdir, persistent)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with code {proc.returncode}; output:\n{_tail(log_path)}"
            )
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1,
                             socket_connect_timeout=1)
        try:
            if client.ping():
                log.info("event=devstack.redis.ready port=%d pid=%d", port, proc.pid)
                return proc
        except redis.exceptions.RedisError:
            pass
        finally:
            client.close()
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"redis-server did not answer PING within 20 s; output:\n{_tail(log_path)}")


def ssha_hash(password: str) -> str:
    """Hash a password as {SSHA} so no clear secret is written to disk or argv."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def default_ldapi_path(workdir: Path) -> Path:
    """Where start_slapd puts its ldapi socket unless told otherwise."""
    return Path(workdir).resolve() / LDAPI_DIR / LDAPI_SOCKET


def mail_service_dn(base_dn: str) -> str:
    """The read-only account the mail platform binds as (provisioners.mail.mailboxes creates it)."""
    return f"cn=mail,ou=system,{base_dn}"


def slapd_config(workdir: Path, *, base_dn: str, admin_dn: str, admin_password: str,
                 extra_schemas: tuple[Path, ...] = ()) -> str:
    """Render slapd.conf: anonymous may only bind, bound users may read, only rootdn writes."""
    workdir = Path(workdir)
    for value in (base_dn, admin_dn):
        if any(ch in value for ch in '"\n\r\\'):
            raise ValueError(f"unsupported character in DN {value!r}")
    for schema in extra_schemas:
        if any(ch in str(schema) for ch in '"\n\r\\ '):
            raise ValueError(f"unsupported character in schema path {str(schema)!r}")
    mail_dn = mail_service_dn(base_dn)
    lines = [f"include /etc/ldap/schema/{name}.schema" for name in SLAPD_SCHEMAS]
    lines += [f"include {schema}" for schema in extra_schemas]
    lines += [
        f"modulepath {SLAPD_MODULE_PATH}",
        "moduleload back_mdb",
        f"pidfile {workdir / 'slapd.pid'}",
        f"argsfile {workdir / 'slapd.args'}",
        "",
        # Root DSE and schema stay readable so clients can discover the server.
        'access to dn.base="" by * read',
        'access to dn.base="cn=Subschema" by * read',
        "",
        "database mdb",
        f'suffix "{base_dn}"',
        f'rootdn "{admin_dn}"',
        f"rootpw {ssha_hash(admin_password)}",
        f'directory "{workdir / "db"}"',
        "maxsize 1073741824",
        "index objectClass eq",
        "index uid,member,mail eq",
    ]
    if extra_schemas:
        lines += ["index mailDomain,mailAliasTarget eq"]
    lines += [
        "",
        # Disabled accounts cannot bind even if a usable hash were written back.
        "access to attrs=userPassword filter=(description=disabled) by * none",
    ]
    if extra_schemas:
        lines += [
            # A disabled mailbox cannot bind either (Dovecot also filters on mailEnabled).
            "access to attrs=userPassword filter=(mailEnabled=FALSE) by * none",
        ]
    lines += [
        # Hashes are never readable; anonymous (and a re-binding self) may only authenticate.
        "access to attrs=userPassword by anonymous auth by self auth by * none",
    ]
    if extra_schemas:
        lines += [
            # The mail platform's account reads mail routing attributes and nothing else; it
            # never reads hashes (Dovecot checks passwords by binding as the mailbox).
            # Searches start at ou=institutions, whose entry must be searchable.
            f'access to dn.base="ou=institutions,{base_dn}" attrs=entry'
            f' by dn.exact="{mail_dn}" search by * break',
            f'access to dn.subtree="ou=institutions,{base_dn}" filter=(|(objectClass='
            "comgovMailbox)(objectClass=comgovMailAlias)(objectClass=comgovMailDomain)) "
            "attrs=entry,objectClass,mail,mailDomain,mailEnabled,mailQuotaBytes,mailAliasTarget"
            f' by dn.exact="{mail_dn}" read by * break',
            f'access to * by dn.exact="{mail_dn}" none by * break',
        ]
    # A service's directory account sees its own institution and nothing else.
    svc = rf"^uid=svc-[0-9]+,ou=services,ou=[^,]+,ou=institutions,{base_dn}$$"
    lines += [
        rf'access to dn.regex="^(.+,)?ou=([^,]+),ou=institutions,{base_dn}$"'
        rf' by dn.regex="^uid=svc-[0-9]+,ou=services,ou=$2,ou=institutions,{base_dn}$$" read'
        f' by dn.regex="{svc}" none by * break',
        f'access to * by dn.regex="{svc}" none by * break',
        "access to * by users read by anonymous auth by * none",
        "",
    ]
    return "\n".join(lines)


def start_slapd(workdir: Path, port: int, *, base_dn: str, admin_dn: str,
                admin_password: str, ldapi_path: Path | None = None,
                schema_path: Path | None = COMGOV_SCHEMA) -> subprocess.Popen:
    """Run slapd from a plain config file as a child and return once the admin can bind.

    Besides ldap://127.0.0.1:port it listens on an ldapi:// unix socket (default
    ``<workdir>/ldapi/socket``, alone in its directory) so the mail platform can reach the
    directory through a bind-mounted socket without any network exposure.
    """
    binary = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        raise RuntimeError("slapd is not installed (apt-get install slapd ldap-utils)")
    if not admin_password:
        raise ValueError("admin_password must not be empty")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(mode=0o700, exist_ok=True)
    ldapi = Path(ldapi_path).resolve() if ldapi_path is not None else default_ldapi_path(workdir)
    if len(str(ldapi).encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"ldapi socket path is too long for a unix socket: {ldapi}")
    _prepare_socket_dir(ldapi)
    schemas: tuple[Path, ...] = ()
    if schema_path is not None:
        schema_dir = workdir / "schema"
        schema_dir.mkdir(mode=0o755, exist_ok=True)
        copy = schema_dir / Path(schema_path).name
        shutil.copyfile(schema_path, copy)
        os.chmod(copy, 0o644)
        schemas = (copy,)
    conf = workdir / "slapd.conf"
    text = slapd_config(workdir, base_dn=base_dn, admin_dn=admin_dn, admin_password=admin_password,
                        extra_schemas=schemas)
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(conf, 0o600)
    log_path = workdir / "slapd.log"
    url = f"ldap://127.0.0.1:{port}/ ldapi://{urllib.parse.quote(str(ldapi), safe='')}/"
    log.info("event=devstack.slapd.start port=%d dir=%s ldapi=%s", port, workdir, ldapi)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            # "-d none" keeps slapd in the foreground like "-d 0" but still prints its errors.
            [binary, "-f", str(conf), "-h", url, "-d", "none"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"slapd exited with code {proc.returncode}; log tail:\n{_tail(log_path)}"
            )
        ok, last_error = _admin_bind_ok(port, admin_dn, admin_password)
        if ok and not ldapi.is_socket():
            ok, last_error = False, "ldapi socket not created yet"
        if ok:
            os.chmod(ldapi, 0o666)  # access is decided by binds and ACLs, not by socket mode
            log.info("event=devstack.slapd.ready port=%d pid=%d", port, proc.pid)
            return proc
        time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(
        f"slapd admin bind did not succeed within 20 s ({last_error}); "
        f"log tail:\n{_tail(log_path)}"
    )


def _prepare_socket_dir(ldapi: Path) -> None:
    """A 0755 directory holding only the socket; a stale socket from a crash is removed."""
    ldapi.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(ldapi.parent, 0o755)
    if ldapi.is_socket():
        ldapi.unlink()
    elif ldapi.exists():
        raise RuntimeError(f"{ldapi} exists and is not a socket")


def _admin_bind_ok(port: int, admin_dn: str, admin_password: str) -> tuple[bool, str]:
    """Try one admin bind; report the reason on failure for the error message."""
    server = ldap3.Server("127.0.0.1", port=port, get_info=ldap3.NONE, connect_timeout=2)
    conn = ldap3.Connection(server, user=admin_dn, password=admin_password, receive_timeout=2)
    try:
        if conn.bind():
            return True, "ok"
        return False, f"bind result {conn.result.get('description')}"
    except LDAPException as exc:
        return False, type(exc).__name__
    finally:
        try:
            conn.unbind()
        except LDAPException:
            pass


REGISTRY_BINARY = "docker-registry"


def registry_auth_dir(workdir: Path) -> Path:
    """Where start_registry keeps the token-signing key (0600) and the certificate it trusts."""
    return Path(workdir).resolve() / "auth"


def start_registry(workdir: Path, port: int, *, realm: str, service: str, issuer: str,
                   host: str = "127.0.0.1", storage_dir: Path | None = None,
                   log_level: str = "info", notify_url: str | None = None,
                   notify_secret: str | None = None,
                   notify_backoff: str = "10s") -> subprocess.Popen:
    """Run Docker's registry (distribution 2.8) with token authentication; return once /v2/
    answers.

    In `workdir`: `config.yml` (0600, rewritten at each start), `http.secret`, `auth/token.key`
    and `auth/token.crt` (made once: the control plane signs with the key, the registry trusts
    the certificate), `data/` (the images, unless `storage_dir` says otherwise), `registry.log`.
    With `notify_url` and `notify_secret`, the registry posts its push events there (the
    control plane's `/registry/events`, `Authorization: Bearer <notify_secret>`), retrying
    after `notify_backoff` when it cannot deliver.
    """
    binary = shutil.which(REGISTRY_BINARY) or shutil.which(REGISTRY_BINARY,
                                                           path="/usr/bin:/usr/local/bin")
    if binary is None:
        raise RuntimeError(f"{REGISTRY_BINARY} is not installed (apt-get install docker-registry)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    storage = Path(storage_dir).resolve() if storage_dir is not None else workdir / "data"
    storage.mkdir(mode=0o700, parents=True, exist_ok=True)
    material = registry_signing.ensure_signing_material(registry_auth_dir(workdir))
    spec = registry_config.RegistrySpec(
        storage_dir=storage, addr=f"{host}:{port}", realm=realm, service=service, issuer=issuer,
        rootcertbundle=material.cert_path,
        http_secret=registry_config.ensure_http_secret(workdir), log_level=log_level,
        notifications=(registry_config.NotificationEndpoint(
            url=notify_url, secret=notify_secret, backoff=notify_backoff),)
        if notify_url and notify_secret else ())
    conf = registry_config.write(workdir / registry_config.CONFIG_FILE,
                                 registry_config.render(spec))
    log_path = workdir / "registry.log"
    log.info("event=devstack.registry.start addr=%s:%d dir=%s", host, port, workdir)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(conf)], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    url = f"http://{host}:{port}/v2/"
    deadline = time.monotonic() + 20
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{REGISTRY_BINARY} exited with code {proc.returncode}; "
                               f"log tail:\n{_tail(log_path)}")
        try:
            status = requests.get(url, timeout=1).status_code
        except requests.RequestException as exc:
            last_error = type(exc).__name__
        else:
            if status in (200, 401):  # 401 + a Bearer challenge: token auth is on
                log.info("event=devstack.registry.ready addr=%s:%d pid=%d", host, port, proc.pid)
                return proc
            last_error = f"HTTP {status}"
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError(f"{REGISTRY_BINARY} did not answer on {url} within 20 s ({last_error}); "
                       f"log tail:\n{_tail(log_path)}")


def stop_process(proc: subprocess.Popen | None) -> None:
    """Stop a service we started: TERM, wait 10 s, then KILL; harmless if already gone."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.warning("event=devstack.stop.kill pid=%d", proc.pid)
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    log.info("event=devstack.stop pid=%d code=%s", proc.pid, proc.returncode)


def _tail(path: Path, lines: int = 30) -> str:
    """Return the end of a log file for error messages."""
    try:
        data = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:]) or "(empty log)"
