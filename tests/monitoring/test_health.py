"""Health probes against a real site behind the proxy, real sockets and fake mail servers."""
from __future__ import annotations

import datetime
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker.errors
import pytest

from provisioners import probes as health
from provisioners.docker import runtime
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.images import build as images
from provisioners.images.build import IMAGES_DIR
from provisioners.proxy import ProxySpec
from provisioners.website import site as website
from provisioners.website.site import WebsiteSpec

TEST_LABELS = {"bi.gov.comgov.test": "1"}
NGINX_IMAGE = "comgov/nginx:bookworm"
NGINX_DIR = IMAGES_DIR / "nginx"
LIMITS = Limits(memory_bytes=64 * 1024 * 1024, nano_cpus=500_000_000, pids=64)  # as the proxy's


def poll(probe: Callable[[], health.ProbeResult], want_ok: bool,
         timeout: float = 10.0) -> health.ProbeResult:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result.ok == want_ok or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


# --------------------------------------------------------------------------- fake servers

Script = Callable[[socketserver.StreamRequestHandler], None]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """A probe hanging up mid-handshake is part of the tests, not worth a traceback."""


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[int, list[str]]]]:
    """Start a one-script TCP server on 127.0.0.1; returns (port, lines it received)."""
    servers: list[_Server] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> tuple[int, list[str]]:
        received: list[str] = []

        class Handler(socketserver.StreamRequestHandler):
            timeout = 5

            def setup(self) -> None:
                if tls is not None:
                    self.request = tls.wrap_socket(self.request, server_side=True)
                super().setup()

            def say(self, text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")

            def hear(self) -> str:
                line = self.rfile.readline().decode().rstrip("\r\n")
                received.append(line)
                return line

            def handle(self) -> None:
                try:
                    script(self)
                except OSError:
                    pass

        server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], received

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def smtp_ok(h) -> None:
    h.say("220 mx.gov.bi ESMTP ready")
    h.hear()
    h.say("250-mx.gov.bi")
    h.say("250-SIZE 10240000")
    h.say("250 8BITMIME")
    if h.hear() == "QUIT":
        h.say("221 bye")


def test_smtp_probe_parses_multiline_replies(serve):
    port, received = serve(smtp_ok)
    result = health.smtp_probe("127.0.0.1", port)
    assert result.ok, result
    assert "mx.gov.bi ESMTP ready" in result.detail and result.latency_ms > 0
    assert received[0] == f"EHLO {health.EHLO_NAME}"


@pytest.mark.parametrize("script,expected", [
    (lambda h: h.say("554 5.3.2 no service"), "greeting 554"),
    (lambda h: (h.say("220-first line"), h.say("220 ready"), h.hear(), h.say("502 no EHLO")),
     "EHLO answered 502"),
    (lambda h: h.say("HTTP/1.1 400 Bad Request"), "not an SMTP reply"),
    (lambda h: None, "connection closed"),
    (lambda h: time.sleep(2), "timed out"),
])
def test_smtp_probe_failures(serve, script, expected):
    port, _ = serve(script)
    result = health.smtp_probe("127.0.0.1", port, timeout=0.5)
    assert not result.ok
    assert expected in result.detail
    assert result.latency_ms < 1500


@pytest.mark.parametrize("greeting,ok", [
    ("* OK [CAPABILITY IMAP4rev1] Dovecot ready.", True),
    ("* PREAUTH IMAP4rev1 logged in", True),
    ("* BYE too many connections", False),
    ("220 this is SMTP", False),
])
def test_imap_probe_greetings(serve, greeting, ok):
    def script(h) -> None:
        h.say(greeting)
        if h.hear() == "h1 LOGOUT":
            h.say("* BYE")
            h.say("h1 OK LOGOUT completed")

    port, received = serve(script)
    result = health.imap_probe("127.0.0.1", port, timeout=1)
    assert result.ok is ok, result
    if ok:
        assert result.detail == greeting
        deadline = time.monotonic() + 2
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert received == ["h1 LOGOUT"]


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_implicit_tls_probes(serve, tmp_path):
    context = self_signed(tmp_path)
    smtps, _ = serve(smtp_ok, tls=context)
    imaps, _ = serve(lambda h: (h.say("* OK ready"), h.hear()), tls=context)
    assert health.smtp_probe("127.0.0.1", smtps, tls=True).ok
    assert health.imap_probe("127.0.0.1", imaps, tls=True).ok
    assert not health.imap_probe("127.0.0.1", imaps, timeout=0.5).ok  # TLS spoken to plain


def test_tcp_probe():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert health.tcp_probe("127.0.0.1", port).ok
    result = health.tcp_probe("127.0.0.1", port, timeout=0.5)
    assert not result.ok and "ConnectionRefused" in result.detail
    assert not health.http_probe("127.0.0.1", port, timeout=0.5).ok


# --------------------------------------------------------------------------- real site

@pytest.fixture(scope="module")
def nginx_image(docker_client, tmp_path_factory) -> str:
    try:
        docker_client.images.get(NGINX_IMAGE)
    except docker.errors.ImageNotFound:
        images.ensure_base_image(docker_client, tmp_path_factory.mktemp("base"))
        docker_client.images.build(path=str(NGINX_DIR), tag=NGINX_IMAGE, rm=True)
    return NGINX_IMAGE


@pytest.fixture(scope="module")
def proxy(docker_prefix, proxy_port, nginx_image) -> ProxySpec:
    return ProxySpec(prefix=docker_prefix, image=nginx_image, bind="127.0.0.1",
                     port=proxy_port, limits=LIMITS, extra_labels=TEST_LABELS)


@pytest.fixture(scope="module")
def site(docker_client, docker_prefix, proxy, nginx_image) -> Iterator[WebsiteSpec]:
    spec = WebsiteSpec(service_id=9301, institution_id=93, institution="HLT",
                       hostname="health.test.gov.bi", limits=LIMITS, prefix=docker_prefix,
                       image=nginx_image, extra_labels=TEST_LABELS)
    website.ensure_website(docker_client, spec, proxy)
    yield spec
    website.remove_website(docker_client, spec, proxy)


@pytest.mark.docker
def test_http_probe_and_state_follow_the_site(docker_client, proxy_port, site, proxy):
    def probe() -> health.ProbeResult:
        return health.http_probe("127.0.0.1", proxy_port, host_header=site.hostname)

    result = poll(probe, True)
    assert result.ok and result.detail == "200 OK", result
    unknown = health.http_probe("127.0.0.1", proxy_port, host_header="nobody.gov.bi")
    assert not unknown.ok and unknown.detail == "404 Not Found"
    name = website.container_name(site)
    assert health.container_state(docker_client, name) == ("running", None)

    website.stop_website(docker_client, site)
    assert health.container_state(docker_client, name) == ("exited", None)
    stopped = poll(probe, False)
    assert not stopped.ok and stopped.detail.startswith("50"), stopped  # 502, or 504
    website.start_website(docker_client, site, proxy)
    assert poll(probe, True).ok
    assert health.container_state(docker_client, "no-such-container-here") == ("absent", None)


@pytest.mark.docker
def test_container_state_reports_docker_healthcheck(docker_client, docker_prefix):
    spec = ContainerSpec(
        name=f"{docker_prefix}-hlt-checked", image=images.BASE_IMAGE, network="none",
        limits=Limits(16 * 1024 * 1024, 100_000_000, 16),
        labels=runtime.labels(docker_prefix, "health-test", extra=TEST_LABELS),
        command=["sleep", "infinity"])
    options = {**runtime.hardened_options(spec), "healthcheck": {
        "test": ["CMD", "test", "-d", "/"], "interval": 200_000_000, "timeout": 1_000_000_000,
        "retries": 1, "start_period": 0}}
    container = docker_client.containers.create(**options)
    try:
        container.start()
        deadline = time.monotonic() + 15
        state = health.container_state(docker_client, spec.name)
        while state[1] != "healthy" and time.monotonic() < deadline:
            time.sleep(0.1)
            state = health.container_state(docker_client, spec.name)
        assert state == ("running", "healthy")
    finally:
        runtime.remove_container(docker_client, spec.name)
