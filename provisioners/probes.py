"""Health probes: is a service answering its protocol, not merely is its container running.

Every probe has a short deadline for the whole exchange and returns a :class:`ProbeResult`
instead of raising, so a sweep over many services never stalls on one. Usage::

    http_probe("127.0.0.1", 8080, host_header="www.minisante.gov.bi")
    smtp_probe("10.0.3.7", 25)        # greeting 220, then EHLO answered 250
    imap_probe("10.0.3.7", 993, tls=True)
    container_state(client, "comgov-web-42")   # ("running", "healthy" | None)
"""
from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from typing import BinaryIO

import docker
import docker.errors

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3.0
EHLO_NAME = "comgov-health"
MAX_LINE = 4096
MAX_REPLY_LINES = 64


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe; detail says what was seen, for operators."""

    ok: bool
    detail: str
    latency_ms: float


class _ProtocolError(Exception):
    """The peer answered, but not what the protocol expects."""


def tcp_probe(host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """Something accepts connections on host:port."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return _result(False, _describe(exc), started, "tcp", host, port)
    return _result(True, "connected", started, "tcp", host, port)


def http_probe(
    host: str,
    port: int,
    host_header: str | None = None,
    path: str = "/",
    timeout: float = DEFAULT_TIMEOUT,
    ok_statuses: range | frozenset[int] = range(200, 400),
) -> ProbeResult:
    """GET path (with a Host header for name-based routing); ok on a 2xx/3xx answer.

    detail is the status line ("200 OK", "502 Bad Gateway") or the connection error.
    """
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Host": host_header} if host_header else {}
        headers["User-Agent"] = EHLO_NAME
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read(65536)
        status, reason = response.status, response.reason
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return _result(False, _describe(exc), started, "http", host, port)
    finally:
        conn.close()
    return _result(status in ok_statuses, f"{status} {reason}".strip(), started, "http", host,
                   port)


def smtp_probe(host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
               tls: bool = False) -> ProbeResult:
    """SMTP greeting 220, then EHLO answered 250; tls=True for implicit TLS (465)."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        sock = _connect(host, port, timeout, tls)
        with sock, sock.makefile("rb") as reader:
            code, greeting = _smtp_reply(sock, reader, deadline)
            if code != 220:
                raise _ProtocolError(f"greeting {code} {greeting}")
            sock.sendall(f"EHLO {EHLO_NAME}\r\n".encode("ascii"))
            code, text = _smtp_reply(sock, reader, deadline)
            if code != 250:
                raise _ProtocolError(f"EHLO answered {code} {text}")
            _polite_goodbye(sock, b"QUIT\r\n")
    except (OSError, _ProtocolError) as exc:
        return _result(False, _describe(exc), started, "smtp", host, port)
    return _result(True, f"220 {greeting}", started, "smtp", host, port)


def imap_probe(host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
               tls: bool = False) -> ProbeResult:
    """IMAP greeting '* OK' (or '* PREAUTH'); tls=True for implicit TLS (993)."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        sock = _connect(host, port, timeout, tls)
        with sock, sock.makefile("rb") as reader:
            greeting = _readline(sock, reader, deadline)
            upper = greeting.upper()
            if not (upper.startswith("* OK") or upper.startswith("* PREAUTH")):
                raise _ProtocolError(f"greeting {greeting!r}")
            _polite_goodbye(sock, b"h1 LOGOUT\r\n")
    except (OSError, _ProtocolError) as exc:
        return _result(False, _describe(exc), started, "imap", host, port)
    return _result(True, greeting, started, "imap", host, port)


def container_state(client: docker.DockerClient, name: str) -> tuple[str, str | None]:
    """(status, health) from one inspect: ("absent", None) when there is no such container.

    health is Docker's healthcheck verdict (starting/healthy/unhealthy), None without one.
    """
    try:
        state = client.api.inspect_container(name).get("State") or {}
    except docker.errors.NotFound:
        return "absent", None
    health = (state.get("Health") or {}).get("Status")
    return state.get("Status") or "unknown", health


def _connect(host: str, port: int, timeout: float, tls: bool) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if not tls:
        return sock
    # A liveness probe: certificate trust is checked elsewhere (expiry monitoring).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except OSError:
        sock.close()
        raise


def _readline(sock: socket.socket, reader: BinaryIO, deadline: float) -> str:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    sock.settimeout(remaining)
    line = reader.readline(MAX_LINE)
    if not line:
        raise _ProtocolError("connection closed")
    return line.decode("utf-8", "replace").rstrip("\r\n")


def _smtp_reply(sock: socket.socket, reader: BinaryIO, deadline: float) -> tuple[int, str]:
    """A possibly multi-line reply ('250-...' lines then '250 ...'): (code, last text)."""
    for _ in range(MAX_REPLY_LINES):
        line = _readline(sock, reader, deadline)
        if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
            raise _ProtocolError(f"not an SMTP reply: {line[:80]!r}")
        if len(line) == 3 or line[3] == " ":
            return int(line[:3]), line[4:]
    raise _ProtocolError("reply too long")


def _polite_goodbye(sock: socket.socket, command: bytes) -> None:
    """Say goodbye so servers do not log an aborted session; its answer does not matter."""
    try:
        sock.settimeout(0.5)
        sock.sendall(command)
    except OSError:
        pass


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:200]


def _result(ok: bool, detail: str, started: float, kind: str, host: str,
            port: int) -> ProbeResult:
    latency = (time.monotonic() - started) * 1000.0
    if not ok:
        log.info("event=health.fail kind=%s host=%s port=%s detail=%r", kind, host, port, detail)
    return ProbeResult(ok=ok, detail=detail[:200], latency_ms=round(latency, 2))
