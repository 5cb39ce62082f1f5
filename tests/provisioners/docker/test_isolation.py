"""Tenant isolation on the real Docker Engine: networks, Docker socket, host-only services.

Small hardened containers (``runtime.hardened_options``) from ``comgov/base:bookworm``
probe with bash's ``/dev/tcp`` under coreutils' ``timeout`` (the base image has bash,
perl and coreutils, no python3). Every negative check has a positive control, so a
broken probe cannot make a hole look closed.
"""
from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from devtools import devstack
from provisioners.docker import runtime
from provisioners.docker.runtime import ContainerSpec, Limits

pytestmark = pytest.mark.docker

BASE_IMAGE = "comgov/base:bookworm"
LIMITS = Limits(memory_bytes=32 * 1024 * 1024, nano_cpus=250_000_000, pids=32)
TEST_LABELS = {"bi.gov.comgov.test": "1"}
SERVER_PORT = 8080
BANNER = "hello-from-b"
# Answers every connection with a banner; TERM ends it at once (PID 1 has no default action).
SERVER_PL = (
    "use IO::Socket::INET; $SIG{TERM} = sub { exit 0 };"
    "my $s = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $ARGV[0],"
    " Listen => 16, ReuseAddr => 1) or die $!;"
    "while (my $c = $s->accept) { print $c \"$ARGV[1]\\n\"; close $c }"
)
# Connect and read one line; exit 0 only if the connection was accepted.
PROBE_SH = 'exec 3<>"/dev/tcp/$0/$1" || exit 1; IFS= read -r -t 2 line <&3; echo "$line"'


def _container(client, prefix: str, name: str, network: str, command: list[str],
               ports: dict | None = None):
    spec = ContainerSpec(
        name=f"{prefix}-iso-{name}", image=BASE_IMAGE, network=network, limits=LIMITS,
        labels=runtime.labels(prefix, "isolation-test", extra=TEST_LABELS),
        command=command, ports=ports or {}, user="65534:65534",
    )
    return runtime.ensure_container(client, spec)


@pytest.fixture(scope="module")
def tenants(docker_client, docker_prefix):
    """Institution A (net-1) with a client; institution B (net-2) with a server and a client."""
    nets = {}
    for number, acronym in ((1, "ISOA"), (2, "ISOB")):
        name = f"{docker_prefix}-net-{number}"
        runtime.ensure_network(docker_client, name, runtime.labels(
            docker_prefix, "network", institution=acronym, extra=TEST_LABELS))
        nets[number] = name
    published = devstack.free_port()
    idle = ["sleep", "infinity"]
    made = {
        "server": _container(docker_client, docker_prefix, "b-server", nets[2],
                             ["perl", "-e", SERVER_PL, str(SERVER_PORT), BANNER],
                             ports={f"{SERVER_PORT}/tcp": ("127.0.0.1", published)}),
        "b": _container(docker_client, docker_prefix, "b-client", nets[2], idle),
        "a": _container(docker_client, docker_prefix, "a-client", nets[1], idle),
    }
    for container in made.values():
        container.reload()
    info = {
        "containers": made, "published": published,
        "server_ip": made["server"].attrs["NetworkSettings"]["Networks"][nets[2]]["IPAddress"],
        "gateway_a": _gateway(docker_client, nets[1]),
        "gateway_b": _gateway(docker_client, nets[2]),
    }
    _wait_listening(made["b"], made["server"].name, SERVER_PORT)
    yield info
    for container in made.values():
        runtime.remove_container(docker_client, container.name)


def _gateway(client, network: str) -> str:
    return client.networks.get(network).attrs["IPAM"]["Config"][0]["Gateway"]


def probe(container, host: str, port: int) -> tuple[bool, str]:
    """Try a TCP connection from inside the container (3 s bound); (connected, output)."""
    result = container.exec_run(["timeout", "3", "bash", "-c", PROBE_SH, host, str(port)])
    return result.exit_code == 0, result.output.decode("utf-8", "replace").strip()


def _wait_listening(container, host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe(container, host, port)[0]:
        if time.monotonic() > deadline:
            raise AssertionError(f"{host}:{port} never answered from {container.name}")
        time.sleep(0.2)


def _host_can_connect(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_same_institution_reaches_its_services(tenants):
    """Positive control: the probe does detect an open path."""
    client, server = tenants["containers"]["b"], tenants["containers"]["server"]
    assert probe(client, tenants["server_ip"], SERVER_PORT) == (True, BANNER)
    assert probe(client, server.name, SERVER_PORT) == (True, BANNER)


def test_other_institution_cannot_connect_by_ip(tenants):
    ok, output = probe(tenants["containers"]["a"], tenants["server_ip"], SERVER_PORT)
    assert not ok, f"institution A reached B's container by IP: {output}"


def test_other_institution_cannot_resolve_or_connect_by_name(tenants):
    a, server = tenants["containers"]["a"], tenants["containers"]["server"]
    resolved = a.exec_run(["getent", "hosts", server.name])
    assert resolved.exit_code != 0, f"B's name resolves in A: {resolved.output!r}"
    ok, output = probe(a, server.name, SERVER_PORT)
    assert not ok, f"institution A reached B's container by name: {output}"
    assert tenants["containers"]["b"].exec_run(["getent", "hosts", server.name]).exit_code == 0


def test_no_tenant_container_sees_the_docker_socket(docker_client, docker_prefix, tenants):
    for container in tenants["containers"].values():
        for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd"):
            assert container.exec_run(["test", "-e", path]).exit_code == 1, (container.name,
                                                                              path)
    # Nothing the platform manages under this prefix (websites, applications, the proxy...)
    # has the socket or the Docker state mounted.
    for container in runtime.list_containers(docker_client, docker_prefix):
        for mount in container.attrs.get("Mounts") or []:
            source = mount.get("Source") or ""
            assert "docker.sock" not in source and not source.startswith("/var/lib/docker/"
                                                                          "containers"), (
                container.name, mount)
    # dockerd does not listen on TCP either (2375/2376 on the tenant gateway).
    for port in (2375, 2376):
        assert not probe(tenants["containers"]["a"], tenants["gateway_a"], port)[0]


def test_ldap_and_redis_are_not_reachable(tenants, ldap_config, redis_url):
    ports = {"ldap": urlsplit(ldap_config.url).port, "redis": urlsplit(redis_url).port}
    a = tenants["containers"]["a"]
    for service, port in ports.items():
        assert _host_can_connect(port), f"{service} is not even up on the host"  # control
        for host in ("127.0.0.1", tenants["gateway_a"], tenants["gateway_b"]):
            ok, output = probe(a, host, port)
            assert not ok, f"tenant reached {service} at {host}:{port}: {output}"


def test_port_published_on_host_loopback_is_not_reachable(tenants):
    port = tenants["published"]
    assert _host_can_connect(port)  # control: the publication works from the host itself
    for name in ("a", "b"):
        container = tenants["containers"][name]
        for host in ("127.0.0.1", tenants["gateway_a"], tenants["gateway_b"]):
            ok, output = probe(container, host, port)
            assert not ok, f"{container.name} reached 127.0.0.1:{port} of the host via {host}"


def test_tenants_cannot_open_raw_sockets(tenants):
    """Without NET_RAW a tenant cannot forge packets to the host's 127.0.0.1 (martian trick)."""
    result = tenants["containers"]["a"].exec_run(
        ["perl", "-MSocket", "-e", "socket(my $s, PF_INET, SOCK_RAW, 255) or exit 3; exit 0"])
    assert result.exit_code == 3


def test_server_container_is_hardened(docker_client, tenants):
    attrs = docker_client.containers.get(tenants["containers"]["server"].id).attrs
    host = attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert host["ReadonlyRootfs"] and "no-new-privileges:true" in host["SecurityOpt"]
    assert not host["Privileged"] and host["NetworkMode"] not in ("host", "default")


@pytest.fixture
def host_firewall():
    """The platform's host rule (make run installs it at start): tenants cannot reach the host."""
    from provisioners.docker import firewall

    if not firewall.ensure_host_isolation():
        pytest.skip("iptables is not usable here (not root?)")
    yield


def test_host_services_on_all_interfaces_are_not_reachable(tenants, host_firewall):
    import threading

    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen(4)
        listener.settimeout(5)
        port = listener.getsockname()[1]

        def answer() -> None:
            try:
                conn, _ = listener.accept()
                conn.sendall(b"host\n")
                conn.close()
            except OSError:
                pass

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        ok, output = probe(tenants["containers"]["a"], tenants["gateway_a"], port)
        thread.join(6)
    assert not ok, f"tenant reached a host service on 0.0.0.0:{port}: {output}"
