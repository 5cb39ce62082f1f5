"""Applications behind the front proxy, on a real Docker Engine, with a tiny perl HTTP app."""
from __future__ import annotations

import hashlib
import io
import tarfile
import time
from urllib.parse import unquote, urlsplit

import docker.errors
import pytest
import requests

from provisioners import proxy as proxy_mod
from provisioners.application import container as application
from provisioners.application import healthcheck as app_health
from provisioners.application.container import ApplicationSpec, ApplicationUnhealthy
from provisioners.docker import runtime, volumes
from provisioners.docker.runtime import Limits
from provisioners.images.build import IMAGES_DIR
from provisioners.proxy import ProxySpec

TEST_LABELS = {"bi.gov.comgov.test": "1"}
NGINX_IMAGE = "comgov/nginx:bookworm"
NGINX_DIR = IMAGES_DIR / "nginx"
LIMITS = Limits(memory_bytes=64 * 1024 * 1024, nano_cpus=500_000_000, pids=64)  # as websites
APP_IMAGE = "comgov-test/app:1"
APP_PORT = 9000
STOPPED = "Service arrêté"

# A one-connection-at-a-time HTTP/1.0 server in core perl: the base image already has
# perl, so the image builds in about a second without apt.
SERVER_PL = r"""use strict; use warnings; use IO::Socket::INET;
$| = 1; $SIG{PIPE} = "IGNORE"; $SIG{TERM} = sub { exit 0 };  # PID 1: no default TERM
my $port = $ENV{APP_PORT} || 9000;
my $srv = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => $port, Listen => 16,
                                ReuseAddr => 1) or die "listen: $!\n";
print "listening port=$port uid=$<\n";
while (my $c = $srv->accept) {
  eval {
    local $SIG{ALRM} = sub { die "timeout\n" }; alarm 5;
    my $line = <$c> // "";
    while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
    my ($path) = $line =~ m{^GET (\S+)}; $path //= "/";
    my ($status, $body) = (200, "");
    if ($path eq "/health") { $body = "ok\n" }
    elsif ($path eq "/") { $body = "comgov test app: " . ($ENV{GREETING} // "") . "\n" }
    elsif ($path eq "/uid") { $body = "$<\n" }
    elsif ($path =~ m{^/env/([A-Z_][A-Z0-9_]*)$}) {
      if (exists $ENV{$1}) { $body = $ENV{$1} } else { ($status, $body) = (404, "unset\n") }
    }
    elsif ($path =~ m{^/(write|read)/(\w+)$}) {
      my $file = "$ENV{DATA_DIR}/$2.txt";
      if ($1 eq "write") { open(my $f, ">", $file) or die "write: $!\n"; print $f $2; close $f;
                           $body = "written\n" }
      elsif (open(my $f, "<", $file)) { local $/; $body = <$f> }
      else { ($status, $body) = (404, "no file\n") }
    }
    else { ($status, $body) = (404, "not found\n") }
    print $c "HTTP/1.0 $status X\r\nContent-Type: text/plain\r\nContent-Length: "
      . length($body) . "\r\nConnection: close\r\n\r\n$body";
    alarm 0;
  };
  print STDERR "error: $@" if $@;
  close $c;
}
"""
DOCKERFILE = """FROM comgov/base:bookworm
COPY server.pl /opt/app/server.pl
RUN install -d -o 65534 -g 65534 -m 0755 /data
USER 65534:65534
EXPOSE 9000
CMD ["perl", "/opt/app/server.pl"]
"""
IMAGE_HASH_LABEL = "bi.gov.comgov.test-image-hash"


@pytest.fixture(scope="session")
def nginx_image(docker_client) -> str:
    try:
        docker_client.images.get(NGINX_IMAGE)
    except docker.errors.ImageNotFound:
        docker_client.images.build(path=str(NGINX_DIR), tag=NGINX_IMAGE, rm=True)
    return NGINX_IMAGE


@pytest.fixture(scope="session")
def app_image(docker_client) -> str:
    """The test application image, kept across sessions and rebuilt when its source changes."""
    digest = hashlib.sha256((DOCKERFILE + SERVER_PL).encode()).hexdigest()
    try:
        if docker_client.images.get(APP_IMAGE).labels.get(IMAGE_HASH_LABEL) == digest:
            return APP_IMAGE
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("Dockerfile", DOCKERFILE), ("server.pl", SERVER_PL)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    docker_client.images.build(fileobj=buf, custom_context=True, tag=APP_IMAGE, rm=True,
                               labels={IMAGE_HASH_LABEL: digest})
    return APP_IMAGE


@pytest.fixture(scope="module")
def proxy(docker_prefix, proxy_port, nginx_image) -> ProxySpec:
    return ProxySpec(prefix=docker_prefix, image=nginx_image, bind="127.0.0.1",
                     port=proxy_port, limits=LIMITS, extra_labels=TEST_LABELS)


def make_app(prefix: str, service_id: int, hostname: str = "ok.gov.bi",
             **overrides) -> ApplicationSpec:
    values = dict(service_id=service_id, institution_id=1, institution="MSPLS",
                  hostname=hostname, image=APP_IMAGE, port=APP_PORT,
                  environment={"APP_PORT": str(APP_PORT), "DATA_DIR": "/data"},
                  health_path="/health", limits=LIMITS, prefix=prefix, volume_path="/data",
                  extra_labels=TEST_LABELS, health_interval=1)
    values.update(overrides)
    return ApplicationSpec(**values)


def fetch(port: int, host: str, path: str = "/") -> tuple[int | None, str]:
    try:
        response = requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host},
                                timeout=3)
        return response.status_code, response.text
    except requests.RequestException as exc:
        return None, repr(exc)


def wait_for(port: int, host: str, status: int, text: str, path: str = "/",
             timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got, body = fetch(port, host, path)
        if got == status and text in body:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{host}{path}: wanted {status} {text!r}, "
                                 f"got {got} {body[:300]!r}")
        time.sleep(0.1)


@pytest.mark.docker
def test_application_lifecycle(docker_client, docker_prefix, proxy, proxy_port, app_image):
    db = application.database_env("postgresql", application.database_host(docker_prefix, 5),
                                  5432, "gestion", "gestion", "s3cr:t/@?#")
    app = make_app(docker_prefix, 41, "gestion.minisante.gov.bi",
                   environment={"APP_PORT": str(APP_PORT), "DATA_DIR": "/data",
                                "GREETING": "Bonjour Gitega", **db})
    name = application.container_name(app)
    started = time.monotonic()
    application.ensure_application(docker_client, app, proxy, wait_timeout=30)
    assert time.monotonic() - started < 30
    container = docker_client.containers.get(name)
    assert container.attrs["State"]["Health"]["Status"] == "healthy"
    wait_for(proxy_port, app.hostname, 200, "comgov test app: Bonjour Gitega")
    assert fetch(proxy_port, app.hostname, "/env/DATABASE_URL") == (200, db["DATABASE_URL"])
    assert fetch(proxy_port, app.hostname, "/env/DB_PASSWORD") == (200, "s3cr:t/@?#")
    assert fetch(proxy_port, app.hostname, "/uid") == (200, "65534\n")  # the image's USER

    host_config = container.attrs["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"]
    assert not host_config["PortBindings"]
    assert host_config["Memory"] == LIMITS.memory_bytes
    assert set(container.attrs["NetworkSettings"]["Networks"]) == {
        application.network_name(docker_prefix, 1)}
    assert container.labels[runtime.LABEL_KIND] == "application"
    assert container.labels["bi.gov.comgov.test"] == "1"
    assert [(m["Name"], m["Destination"], m["RW"]) for m in container.attrs["Mounts"]] == [
        (application.volume_name(app), "/data", True)]
    route = proxy_mod.render_route(application.route_id(app), app.hostname, name,
                                   application.network_name(docker_prefix, 1), APP_PORT)
    assert f"http://{name}:{APP_PORT};" in route

    # The fallback probes work on their own as well (perl is what this image uses).
    for program, shell in ((app_health._PROBE_BASH, "bash"),
                           (app_health._PROBE_PL, "perl")):
        argv = [shell, "-c" if shell == "bash" else "-e", program]
        argv += ["probe"] if shell == "bash" else []
        ok = container.exec_run(argv + [str(APP_PORT), "/health", app.hostname])
        bad = container.exec_run(argv + [str(APP_PORT), "/missing", app.hostname])
        assert (ok.exit_code, bad.exit_code) == (0, 1), (shell, ok.output, bad.output)

    application.ensure_application(docker_client, app, proxy, wait_timeout=30)
    assert docker_client.containers.get(name).id == container.id  # twice: same container

    # Data on the volume survives a recreation (changed environment).
    assert fetch(proxy_port, app.hostname, "/write/kept") == (200, "written\n")
    changed = make_app(docker_prefix, 41, app.hostname,
                       environment={**app.environment, "GREETING": "Mwaramutse"})
    application.ensure_application(docker_client, changed, proxy, wait_timeout=30)
    assert docker_client.containers.get(name).id != container.id
    wait_for(proxy_port, app.hostname, 200, "Mwaramutse")
    assert fetch(proxy_port, app.hostname, "/read/kept") == (200, "kept")

    application.stop_application(docker_client, changed)
    wait_for(proxy_port, app.hostname, 502, STOPPED)
    application.start_application(docker_client, changed, proxy, wait_timeout=30)
    wait_for(proxy_port, app.hostname, 200, "Mwaramutse")

    application.remove_application(docker_client, changed, proxy)
    wait_for(proxy_port, app.hostname, 404, "Site inconnu")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(application.volume_name(app))
    application.remove_application(docker_client, changed, proxy)  # already gone: fine


@pytest.mark.docker
def test_application_volume_with_quota(docker_client, docker_prefix, proxy, proxy_port,
                                       app_image, tmp_path):
    root = tmp_path / "volumes"
    app = make_app(docker_prefix, 44, "quota.minisante.gov.bi", disk_bytes=volumes.MIN_SIZE,
                   volumes_root=str(root), user="nobody")  # resolved in the image: 65534
    volume = application.volume_name(app)
    try:
        application.ensure_application(docker_client, app, proxy, wait_timeout=30)
        assert docker_client.volumes.get(volume).attrs["Options"]["device"] == str(
            root.resolve() / f"{volume}.mnt")
        wait_for(proxy_port, app.hostname, 200, "written", path="/write/small")
        container = docker_client.containers.get(application.container_name(app))
        full = container.exec_run(["dd", "if=/dev/zero", "of=/data/big", "bs=1M", "count=40"])
        assert full.exit_code != 0 and b"No space left" in full.output
    finally:
        application.remove_application(docker_client, app, proxy)
    assert not (root / f"{volume}.img").exists()
    application.remove_application(docker_client, app, proxy)


@pytest.mark.docker
def test_volume_owner_is_resolved_in_the_image(docker_client, docker_prefix, app_image):
    def owner(user):
        return application._volume_owner(docker_client, make_app(docker_prefix, 45, user=user))

    assert owner(None) == (65534, 65534)  # the image's USER 65534:65534
    assert owner("nobody") == (65534, 65534)
    assert owner("33") == (33, 33)  # www-data's primary group, from /etc/passwd
    assert owner("4242") == (4242, 0)  # no entry: group root, as Docker does
    assert owner("nobody:www-data") == (65534, 33)
    assert owner("root") is None
    with pytest.raises(ValueError, match="does not exist in image"):
        owner("ghost")
    with pytest.raises(ValueError, match="does not exist in image"):
        owner("nobody:ghosts")


@pytest.mark.docker
def test_unhealthy_application_is_reported(docker_client, docker_prefix, proxy, app_image):
    app = make_app(docker_prefix, 42, "cassee.minisante.gov.bi", health_path="/missing",
                   volume_path=None)
    started = time.monotonic()
    with pytest.raises(ApplicationUnhealthy) as err:
        application.ensure_application(docker_client, app, proxy, wait_timeout=4)
    assert time.monotonic() - started < 15
    assert "404" in str(err.value)
    application.remove_application(docker_client, app, proxy)


@pytest.mark.docker
def test_missing_image_creates_nothing(docker_client, docker_prefix, proxy):
    app = make_app(docker_prefix, 43, "absent.minisante.gov.bi", image="comgov-test/none:0",
                   institution_id=9)
    with pytest.raises(ValueError, match="not present on this host"):
        application.ensure_application(docker_client, app, proxy)
    assert not docker_client.networks.list(names=[application.network_name(docker_prefix, 9)])


@pytest.mark.parametrize("environment, message", [
    ({"lower": "x"}, "invalid environment variable name"),
    ({"1ABC": "x"}, "invalid environment variable name"),
    ({"A-B": "x"}, "invalid environment variable name"),
    ({"A" * 129: "x"}, "invalid environment variable name"),
    ({"OK": "a\x00b"}, "NUL"),
    ({"OK": 3}, "must be text"),
    ({"BIG": "x" * (32 * 1024 + 1)}, "is 32769 bytes"),
    ({f"V{i}": "x" for i in range(101)}, "too many environment variables"),
    ({f"V{i}": "x" * 30000 for i in range(10)}, "in total"),
])
def test_environment_is_validated(environment, message):
    with pytest.raises(ValueError, match=message):
        application.validate_environment(environment)


def test_valid_environment_passes():
    env = {"_PRIVATE": "", "A1_B2": "é" * 100, "URL": "https://x.gov.bi/?a=1&b=2"}
    assert application.validate_environment(env) == env


@pytest.mark.parametrize("overrides, message", [
    ({"hostname": "Bad_Host"}, "invalid hostname"),
    ({"port": 0}, "invalid upstream port"),
    ({"port": 70000}, "invalid upstream port"),
    ({"port": True}, "invalid upstream port"),
    ({"health_path": "health"}, "invalid health path"),
    ({"health_path": "/a b"}, "invalid health path"),
    ({"health_path": "/a\r\nX: y"}, "invalid health path"),
    ({"volume_path": "relative"}, "invalid volume path"),
    ({"volume_path": "/data/../etc"}, "invalid volume path"),
    ({"volume_path": "/etc/app"}, "system directory"),
    ({"volume_path": None, "disk_bytes": 1 << 20}, "needs a volume path"),
    ({"disk_bytes": 1 << 24}, "needs volumes_root"),
    ({"disk_bytes": -1}, "invalid disk size"),
    ({"user": "root; rm"}, "invalid user"),
    ({"health_interval": 0}, "health_interval"),
    ({"environment": {"bad name": "x"}}, "invalid environment variable name"),
])
def test_spec_is_validated(overrides, message):
    with pytest.raises(ValueError, match=message):
        application.validate_spec(make_app("cptx", 1, **overrides))


def test_database_env_postgresql_quotes_the_password():
    password = "p@ss:w/rd?#% é"
    env = application.database_env("postgresql", "comgov-db-12", 5432, "gestion", "app_user",
                                   password)
    assert set(env) == {"DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER",
                        "DB_PASSWORD"}
    url = urlsplit(env["DATABASE_URL"])
    assert url.scheme == "postgresql"
    assert (url.hostname, url.port, url.path) == ("comgov-db-12", 5432, "/gestion")
    assert (unquote(url.username), unquote(url.password)) == ("app_user", password)
    assert "@" not in env["DATABASE_URL"].split("@", 1)[0].split("//", 1)[1].replace("%40", "")
    assert env["DB_PASSWORD"] == password and env["DB_PORT"] == "5432"
    application.validate_environment(env)


def test_database_env_mysql_and_errors():
    env = application.database_env("mariadb", "comgov-db-3", 3306, "site", "site", "pw")
    assert env["DATABASE_URL"] == "mysql://site:pw@comgov-db-3:3306/site"
    assert application.DATABASE_PORTS["mysql"] == 3306
    with pytest.raises(ValueError, match="unknown database engine"):
        application.database_env("oracle", "h", 1521, "d", "u", "p")
    with pytest.raises(ValueError, match="invalid database name"):
        application.database_env("mysql", "h", 3306, "d;drop", "u", "p")
    with pytest.raises(ValueError, match="password"):
        application.database_env("mysql", "h", 3306, "d", "u", "")
    with pytest.raises(ValueError, match="invalid upstream port"):
        application.database_env("mysql", "h", 0, "d", "u", "p")


def test_route_upstream_port():
    default = proxy_mod.render_route("web-1", "a.gov.bi", "cpt-web-1", "cpt-net-1")
    assert "http://cpt-web-1:8080;" in default
    assert default == proxy_mod.render_route("web-1", "a.gov.bi", "cpt-web-1", "cpt-net-1", 8080)
    assert "http://cpt-app-1:9000;" in proxy_mod.render_route(
        "app-1", "a.gov.bi", "cpt-app-1", "cpt-net-1", upstream_port=9000)
    for bad in (0, 65536, "80", None, True):
        with pytest.raises(ValueError, match="invalid upstream port"):
            proxy_mod.render_route("app-1", "a.gov.bi", "cpt-app-1", "cpt-net-1", bad)
