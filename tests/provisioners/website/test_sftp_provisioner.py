"""SFTP access to a website with a real client (paramiko), through a real Docker Engine."""
from __future__ import annotations

import ctypes
import io
import os
import secrets
import socket
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import docker.errors
import paramiko
import pytest
import requests

from devtools import devstack
from provisioners import proxy as proxy_mod
from provisioners.docker import runtime, volumes
from provisioners.docker.runtime import Limits
from provisioners.images import build as images
from provisioners.proxy import ProxySpec
from provisioners.website import sftp
from provisioners.website import site as website
from provisioners.website.site import WebsiteSpec

pytestmark = pytest.mark.docker

TEST_LABELS = {"bi.gov.comgov.test": "1"}
LIMITS = Limits(memory_bytes=64 * 1024 * 1024, nano_cpus=500_000_000, pids=64)
MiB = 1024 * 1024
HOST = "sftp.minisante.gov.bi"


@pytest.fixture(scope="module")
def built(docker_client, tmp_path_factory) -> dict[str, str]:
    """Base, site and SFTP images (reused when they exist and are current)."""
    images.ensure_base_image(docker_client, tmp_path_factory.mktemp("base"))
    try:
        nginx = docker_client.images.get(images.image_tag("nginx")).id
    except docker.errors.ImageNotFound:
        nginx = images.ensure_image(docker_client, "nginx")
    return {"nginx": nginx, "sftp": images.ensure_image(docker_client, "sftp")}


@pytest.fixture(scope="module")
def proxy(docker_client, docker_prefix, proxy_port, built) -> ProxySpec:
    spec = ProxySpec(prefix=docker_prefix, image=images.image_tag("nginx"), bind="127.0.0.1",
                     port=proxy_port, limits=LIMITS, extra_labels=TEST_LABELS)
    proxy_mod.ensure_proxy(docker_client, spec)
    return spec


@pytest.fixture(scope="module")
def volumes_root(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("sftp-volumes")
    yield str(root)
    volumes.unmount_all(root)


@pytest.fixture(scope="module")
def served(docker_client, docker_prefix, proxy, volumes_root) -> Iterator[dict]:
    """One site with a 16 MiB quota volume and its SFTP access, shared by the module."""
    site = WebsiteSpec(service_id=9101, institution_id=91, institution="MINISANTE",
                       hostname=HOST, limits=LIMITS, prefix=docker_prefix,
                       image=images.image_tag("nginx"), extra_labels=TEST_LABELS,
                       disk_bytes=16 * MiB, volumes_root=volumes_root)
    spec = sftp.SftpSpec(site=site, image=images.image_tag("sftp"), publish_ip="127.0.0.1",
                         host_port=devstack.free_port())
    password = secrets.token_urlsafe(18)
    website.ensure_website(docker_client, site, proxy)
    sftp.ensure_sftp(docker_client, spec, password)
    sftp.wait_ready("127.0.0.1", spec.host_port)
    yield {"site": site, "spec": spec, "port": spec.host_port, "password": password,
           "user": sftp.login_name(site.service_id)}
    sftp.remove_sftp(docker_client, site)
    website.remove_website(docker_client, site, proxy)


@contextmanager
def session(port: int, user: str, password: str) -> Iterator[paramiko.SFTPClient]:
    """An SFTP session over a fresh SSH connection (host key not checked: a test server)."""
    transport = connect(port, user, password)
    try:
        yield paramiko.SFTPClient.from_transport(transport)
    finally:
        transport.close()


def connect(port: int, user: str, password: str) -> paramiko.Transport:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = 10
    try:
        transport.connect(username=user, password=password)
    except BaseException:
        transport.close()
        raise
    return transport


def fetch(port: int, host: str, path: str = "/", want: str = "", timeout: float = 10.0) -> str:
    """GET through the front proxy until a 200 whose body holds `want` (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host},
                                timeout=3)
            if last.status_code == 200 and want in last.text:
                return last.text
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{host}{path}: no 200 with {want!r} "
                         f"({last.status_code if last is not None else 'no answer'})")


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_sha512_crypt_matches_the_specification_and_glibc():
    assert sftp.sha512_crypt("Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYE"
        "dFCoEOfaS35inz1")
    libcrypt = ctypes.CDLL("libcrypt.so.1")  # libxcrypt: on every Debian system
    libcrypt.crypt.restype = ctypes.c_char_p
    for password in ["", "a", "x" * 64, "y" * 65, "Zé" * 40, secrets.token_urlsafe(24)]:
        hashed = sftp.sha512_crypt(password)
        assert libcrypt.crypt(password.encode(), hashed.encode()).decode() == hashed
        assert sftp.verify_crypt(password, hashed)
        assert not sftp.verify_crypt(password + "x", hashed)
    assert not sftp.verify_crypt("a", "$1$md5$not-ours")


def test_upload_is_served_through_the_proxy(served, proxy_port):
    with session(served["port"], served["user"], served["password"]) as client:
        assert client.normalize(".") == "/site"
        client.putfo(io.BytesIO(b"<h1>Uploaded over SFTP</h1>"), "index.html")
        client.mkdir("css")
        client.putfo(io.BytesIO(b"body{color:#123}"), "css/site.css")
        attrs = client.stat("index.html")
        assert (attrs.st_uid, attrs.st_mode & 0o777) == (website.CONTENT_UID, 0o644)
        assert client.stat("css").st_mode & 0o777 == 0o755  # nginx (uid 33) can read it all
    assert "Uploaded over SFTP" in fetch(proxy_port, HOST, want="Uploaded over SFTP")
    assert "#123" in fetch(proxy_port, HOST, "/css/site.css")


def test_the_login_is_confined_to_the_site(served):
    with session(served["port"], served["user"], served["password"]) as client:
        client.chdir("..")
        assert client.getcwd() == "/" and client.normalize("..") == "/"
        assert client.listdir("/") == ["site"]
        for path in ("/etc/passwd", "../../etc/passwd", "/site/../../etc/shadow",
                     "/etc/ssh/keys/password.hash", "/proc/self/environ"):
            with pytest.raises(OSError):
                client.open(path).read()
        with pytest.raises(OSError):  # the chroot itself is root's
            client.putfo(io.BytesIO(b"x"), "/escape.txt")
        with pytest.raises(OSError):  # a link could point the web server elsewhere
            client.symlink("/etc/passwd", "/site/passwd.html")
        with pytest.raises(OSError):
            client.stat("/site/passwd.html")


def test_no_shell_no_command_no_forwarding(served):
    transport = connect(served["port"], served["user"], served["password"])
    try:
        channel = transport.open_session(timeout=10)
        channel.settimeout(10)
        channel.exec_command("id; cat /etc/passwd")
        output = _read_all(channel)
        assert channel.recv_exit_status() != 0
        assert b"uid=" not in output and b"root:" not in output
        assert b"sftp connections only" in output

        shell = transport.open_session(timeout=10)
        shell.settimeout(10)
        with pytest.raises(paramiko.SSHException):
            shell.get_pty()
        shell = transport.open_session(timeout=10)
        shell.settimeout(10)
        shell.invoke_shell()  # answered by the SFTP server, which takes this for garbage
        shell.sendall(b"echo pwned-$((6*7))\n")
        assert b"pwned-42" not in _read_all(shell)

        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", 8080), ("127.0.0.1", 0),
                                   timeout=10)
    finally:
        transport.close()


def _read_all(channel: paramiko.Channel) -> bytes:
    channel.shutdown_write()
    output = b""
    try:
        while chunk := channel.recv(4096):
            output += chunk
    except socket.timeout:
        pass
    return output


def test_wrong_password_and_other_users_are_refused(served):
    for user, password in [(served["user"], "not-the-password"), ("root", served["password"]),
                           ("www-data", served["password"]), ("svc-1", served["password"]),
                           (served["user"], "")]:
        with pytest.raises(paramiko.AuthenticationException):
            connect(served["port"], user, password).close()


def test_a_write_past_the_quota_fails_and_the_site_keeps_running(served, proxy_port):
    with session(served["port"], served["user"], served["password"]) as client:
        client.putfo(io.BytesIO(b"<p>before the flood</p>"), "index.html")
        with pytest.raises(OSError):
            client.putfo(io.BytesIO(os.urandom(24 * MiB)), "big.bin")
        assert "before the flood" in fetch(proxy_port, HOST, want="before the flood")
        client.remove("big.bin")  # the login cleans up its own partial file
        client.putfo(io.BytesIO(b"<p>after the flood</p>"), "index.html")
    assert "after the flood" in fetch(proxy_port, HOST, want="after the flood")
    site = served["site"]
    used, _size = volumes.volume_usage(site.volumes_root, website.volume_name(site))
    assert used < 4 * MiB


def test_deployed_archives_stay_writable_over_sftp(docker_client, served, proxy_port):
    with session(served["port"], served["user"], served["password"]) as client:
        client.mkdir("drop")  # a sticky, world-writable directory must not stop the next deploy
        client.chmod("drop", 0o1777)
        client.putfo(io.BytesIO(b"x"), "drop/file.txt")
    website.deploy_content(docker_client, served["site"], make_tar({
        "index.html": b"<p>from the archive</p>", "img/logo.svg": b"<svg/>"}))
    assert "from the archive" in fetch(proxy_port, HOST, want="from the archive")
    with session(served["port"], served["user"], served["password"]) as client:
        assert sorted(client.listdir(".")) == ["img", "index.html"]
        assert client.stat("img/logo.svg").st_uid == website.CONTENT_UID
        client.remove("img/logo.svg")
        client.rmdir("img")
        client.putfo(io.BytesIO(b"<p>edited over SFTP</p>"), "index.html")
    assert "edited over SFTP" in fetch(proxy_port, HOST, want="edited over SFTP")


def test_container_is_hardened_and_holds_no_clear_password(docker_client, served, docker_prefix):
    container = docker_client.containers.get(sftp.container_name(served["site"]))
    host_config = container.attrs["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert sorted(host_config["CapAdd"]) == sorted(sftp.CAPABILITIES)
    assert host_config["ReadonlyRootfs"] is True
    assert any("no-new-privileges" in opt for opt in host_config["SecurityOpt"])
    assert host_config["PortBindings"] == {
        "2222/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(served["port"])}]}
    assert list(container.attrs["NetworkSettings"]["Networks"]) == [f"{docker_prefix}-net-91"]
    mounts = {m["Destination"]: (m["Name"], m["RW"]) for m in container.attrs["Mounts"]}
    assert mounts["/srv/sftp/site"] == (website.volume_name(served["site"]), True)
    assert mounts["/etc/ssh/keys"] == (sftp.keys_volume_name(served["site"]), True)
    assert container.labels[runtime.LABEL_KIND] == "sftp"
    assert container.labels[runtime.LABEL_SERVICE] == "9101"
    assert served["password"] not in repr(container.attrs)
    stream, _ = container.get_archive("/etc/ssh/keys/password.hash")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        stored = tar.extractfile(member).read().decode().strip()
    assert (member.uid, member.mode & 0o777) == (0, 0o600)
    assert stored.startswith("$6$") and served["password"] not in stored


def test_ensure_is_convergent_host_keys_stable_password_follows(docker_client, served):
    name = sftp.container_name(served["site"])
    before = docker_client.containers.get(name)
    key = _host_key(served)
    sftp.ensure_sftp(docker_client, served["spec"], served["password"])
    again = docker_client.containers.get(name)
    assert again.id == before.id
    assert again.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]

    again.restart(timeout=5)
    sftp.wait_ready("127.0.0.1", served["port"])
    assert _host_key(served) == key

    new_password = secrets.token_urlsafe(18)
    sftp.ensure_sftp(docker_client, served["spec"], new_password)
    sftp.wait_ready("127.0.0.1", served["port"])
    with pytest.raises(paramiko.AuthenticationException):
        connect(served["port"], served["user"], served["password"]).close()
    connect(served["port"], served["user"], new_password).close()
    assert _host_key(served) == key
    sftp.ensure_sftp(docker_client, served["spec"], served["password"])  # back, for the others
    sftp.wait_ready("127.0.0.1", served["port"])
    connect(served["port"], served["user"], served["password"]).close()


def _host_key(served) -> str:
    """The server's host key, as a client sees it before logging in."""
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", served["port"]),
                                                            timeout=10))
    try:
        transport.start_client(timeout=10)
        return transport.get_remote_server_key().get_base64()
    finally:
        transport.close()


def test_content_deployed_before_sftp_is_adopted(docker_client, docker_prefix, proxy,
                                                 proxy_port):
    """A site without quota whose files are root's (deployed before SFTP existed)."""
    site = WebsiteSpec(service_id=9102, institution_id=91, institution="MINISANTE",
                       hostname="ancien.minisante.gov.bi", limits=LIMITS, prefix=docker_prefix,
                       image=images.image_tag("nginx"), extra_labels=TEST_LABELS)
    spec = sftp.SftpSpec(site=site, image=images.image_tag("sftp"), publish_ip="127.0.0.1",
                         host_port=devstack.free_port())
    try:
        website.ensure_website(docker_client, site, proxy)
        docker_client.containers.run(  # what the deploy helper used to leave: root's files
            "comgov/base:bookworm", ["sh", "-c", "mkdir /data/old && echo '<p>old</p>' | "
                                     "tee /data/index.html > /data/old/page.html"],
            volumes={website.volume_name(site): {"bind": "/data", "mode": "rw"}},
            network_mode="none", remove=True, labels={runtime.LABEL_PREFIX: docker_prefix})
        sftp.ensure_sftp(docker_client, spec, "Adopted-password-1")
        sftp.wait_ready("127.0.0.1", spec.host_port)
        with session(spec.host_port, sftp.login_name(9102), "Adopted-password-1") as client:
            client.remove("old/page.html")
            client.rmdir("old")
            client.putfo(io.BytesIO(b"<p>new</p>"), "index.html")
        assert "new" in fetch(proxy_port, site.hostname, want="<p>new</p>")
    finally:
        sftp.remove_sftp(docker_client, site)
        website.remove_website(docker_client, site, proxy)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(sftp.container_name(site))
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(sftp.keys_volume_name(site))
    sftp.remove_sftp(docker_client, site)  # removing what is gone succeeds
