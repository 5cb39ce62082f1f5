"""Websites behind the front proxy, end to end through a real Docker Engine and HTTP."""
from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable

import docker.errors
import pytest
import requests

from provisioners import proxy as proxy_mod
from provisioners.docker import runtime
from provisioners.docker.runtime import Limits
from provisioners.images.build import IMAGES_DIR
from provisioners.proxy import ProxySpec
from provisioners.website import site as website
from provisioners.website.site import WebsiteSpec

pytestmark = pytest.mark.docker

TEST_LABELS = {"bi.gov.comgov.test": "1"}
NGINX_IMAGE = "comgov/nginx:bookworm"
NGINX_DIR = IMAGES_DIR / "nginx"
LIMITS = Limits(memory_bytes=64 * 1024 * 1024, nano_cpus=500_000_000, pids=64)
PLACEHOLDER = "Site en préparation"
STOPPED = "Service arrêté"


@pytest.fixture(scope="session")
def nginx_image(docker_client) -> str:
    """The site/proxy image; built here only when the image builder has not made it yet."""
    try:
        docker_client.images.get(NGINX_IMAGE)
    except docker.errors.ImageNotFound:
        docker_client.images.build(path=str(NGINX_DIR), tag=NGINX_IMAGE, rm=True)
    return NGINX_IMAGE


@pytest.fixture(scope="module")
def proxy(docker_prefix, proxy_port, nginx_image) -> ProxySpec:
    return ProxySpec(prefix=docker_prefix, image=nginx_image, bind="127.0.0.1",
                     port=proxy_port, limits=LIMITS, extra_labels=TEST_LABELS)


@pytest.fixture
def make_site(docker_prefix, nginx_image) -> Callable[..., WebsiteSpec]:
    def make(service_id: int, hostname: str, institution_id: int = 1,
             institution: str = "MSPLS") -> WebsiteSpec:
        return WebsiteSpec(service_id=service_id, institution_id=institution_id,
                           institution=institution, hostname=hostname, limits=LIMITS,
                           prefix=docker_prefix, image=nginx_image, extra_labels=TEST_LABELS)
    return make


def fetch(port: int, host: str, path: str = "/") -> tuple[int | None, str]:
    try:
        response = requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host},
                                timeout=3)
        return response.status_code, response.text
    except requests.RequestException as exc:
        return None, repr(exc)


def wait_for(port: int, host: str, status: int, text: str, timeout: float = 10.0) -> str:
    """Poll the proxy until it answers status with text in the body (reloads are async)."""
    deadline = time.monotonic() + timeout
    while True:
        got_status, body = fetch(port, host)
        if got_status == status and text in body:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{host}: wanted {status} {text!r}, got {got_status} "
                                 f"{body[:300]!r}")
        time.sleep(0.1)


def make_tar(files: dict[str, bytes], mode: int = 0o644, uid: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid = len(data), mode, uid
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def route_text(client, prefix: str, route_id: str) -> str | None:
    container = client.containers.get(proxy_mod.container_name(prefix))
    try:
        stream, _ = container.get_archive(f"{proxy_mod.CONF_DIR}/routes/{route_id}.conf")
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read().decode()


def networks_of(client, name: str) -> set[str]:
    return set(client.containers.get(name).attrs["NetworkSettings"]["Networks"])


def test_website_lifecycle(docker_client, docker_prefix, proxy, proxy_port, make_site):
    site = make_site(11, "www.minisante.gov.bi")
    host = site.hostname
    website.ensure_website(docker_client, site, proxy)
    wait_for(proxy_port, host, 200, PLACEHOLDER)
    first_id = docker_client.containers.get(website.container_name(site)).id

    website.ensure_website(docker_client, site, proxy)
    assert docker_client.containers.get(website.container_name(site)).id == first_id
    vol_filter = {"label": [f"{runtime.LABEL_SERVICE}=11",
                            f"{runtime.LABEL_PREFIX}={docker_prefix}"]}
    assert [v.name for v in docker_client.volumes.list(filters=vol_filter)] == [
        website.volume_name(site)]
    assert len(docker_client.networks.list(names=[website.network_name(docker_prefix, 1)])) == 1
    mounts = docker_client.containers.get(first_id).attrs["Mounts"]
    assert [(m["Name"], m["Destination"], m["RW"]) for m in mounts] == [
        (website.volume_name(site), "/srv/site", False)]
    assert not docker_client.containers.get(first_id).attrs["HostConfig"]["PortBindings"]

    website.deploy_content(docker_client, site, make_tar({
        "index.html": "<h1>Ministère de la Santé</h1>".encode(),
        "css/site.css": b"h1 { color: green; }",
    }))
    wait_for(proxy_port, host, 200, "Ministère de la Santé")
    assert fetch(proxy_port, host, "/css/site.css") == (200, "h1 { color: green; }")

    website.deploy_content(docker_client, site, make_tar({"index.html": b"<p>v2</p>"}))
    wait_for(proxy_port, host, 200, "<p>v2</p>")
    assert fetch(proxy_port, host, "/css/site.css")[0] == 404  # replaced, not merged

    website.stop_website(docker_client, site)
    wait_for(proxy_port, host, 502, STOPPED)
    website.start_website(docker_client, site, proxy)
    wait_for(proxy_port, host, 200, "<p>v2</p>")

    website.remove_website(docker_client, site, proxy)
    wait_for(proxy_port, host, 404, "Site inconnu")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(website.container_name(site))
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(website.volume_name(site))
    website.remove_website(docker_client, site, proxy)  # already gone: still fine


def test_unknown_host_gets_bilingual_404(docker_client, proxy, proxy_port):
    proxy_mod.ensure_proxy(docker_client, proxy)
    body = wait_for(proxy_port, "nobody.gov.bi", 404, "Site inconnu")
    assert "Unknown site" in body


def test_institutions_are_on_separate_networks(docker_client, docker_prefix, proxy,
                                               proxy_port, make_site):
    sante = make_site(21, "portail.minisante.gov.bi", institution_id=2, institution="MSPLS")
    finances = make_site(22, "www.finances.gov.bi", institution_id=3, institution="MFBPE")
    for site, text in ((sante, b"sante"), (finances, b"finances")):
        website.ensure_website(docker_client, site, proxy)
        website.deploy_content(docker_client, site, make_tar({"index.html": text}))
    net_sante = website.network_name(docker_prefix, 2)
    net_finances = website.network_name(docker_prefix, 3)
    assert networks_of(docker_client, website.container_name(sante)) == {net_sante}
    assert networks_of(docker_client, website.container_name(finances)) == {net_finances}
    assert {net_sante, net_finances} <= networks_of(docker_client,
                                                    proxy_mod.container_name(docker_prefix))
    wait_for(proxy_port, sante.hostname, 200, "sante")
    wait_for(proxy_port, finances.hostname, 200, "finances")
    labels = docker_client.networks.get(net_finances).attrs["Labels"]
    assert labels[runtime.LABEL_INSTITUTION] == "MFBPE"

    # A recreated proxy (spec drift) keeps its routes and re-joins the networks.
    old_id = docker_client.containers.get(proxy_mod.container_name(docker_prefix)).id
    bigger = ProxySpec(prefix=proxy.prefix, image=proxy.image, bind=proxy.bind, port=proxy.port,
                       limits=Limits(LIMITS.memory_bytes * 2, LIMITS.nano_cpus, LIMITS.pids),
                       extra_labels=proxy.extra_labels)
    new = proxy_mod.ensure_proxy(docker_client, bigger)
    assert new.id != old_id
    assert {net_sante, net_finances} <= networks_of(docker_client, new.name)
    wait_for(proxy_port, sante.hostname, 200, "sante")
    wait_for(proxy_port, finances.hostname, 200, "finances")
    proxy_mod.ensure_proxy(docker_client, proxy)
    for site in (sante, finances):
        website.remove_website(docker_client, site, proxy)


def test_routes_are_convergent(docker_client, docker_prefix, proxy, proxy_port, make_site):
    site = make_site(31, "convergent.gov.bi")
    website.ensure_website(docker_client, site, proxy)
    route = website.route_id(site)
    first = route_text(docker_client, docker_prefix, route)
    proxy_mod.set_route(docker_client, proxy, route, site.hostname,
                        website.container_name(site), website.network_name(docker_prefix, 1))
    assert route_text(docker_client, docker_prefix, route) == first
    assert "server_name convergent.gov.bi;" in first
    proxy_mod.remove_route(docker_client, proxy, route)
    proxy_mod.remove_route(docker_client, proxy, route)
    proxy_mod.remove_route(docker_client, proxy, "never-existed")
    assert route_text(docker_client, docker_prefix, "never-existed") is None
    wait_for(proxy_port, site.hostname, 404, "Site inconnu")
    website.remove_website(docker_client, site, proxy)


def test_content_with_odd_owners_is_still_served(docker_client, proxy, proxy_port, make_site):
    site = make_site(41, "odd.gov.bi")
    website.ensure_website(docker_client, site, proxy)
    website.deploy_content(docker_client, site,
                           make_tar({"index.html": b"private-ish"}, mode=0o600, uid=1000))
    wait_for(proxy_port, site.hostname, 200, "private-ish")
    website.remove_website(docker_client, site, proxy)


@pytest.mark.parametrize("hostname", [
    "WWW.minisante.gov.bi", "bad_host.gov.bi", "trailing.dot.gov.bi.", "-lead.gov.bi",
    "a..gov.bi", "x" * 64 + ".gov.bi", "evil.gov.bi; include /etc/passwd", "", "ex ample.bi",
    "evil.gov.bi\n", "*.gov.bi",
])
def test_invalid_hostname_raises_before_anything_is_created(docker_client, docker_prefix,
                                                            proxy, make_site, hostname):
    site = make_site(51, hostname, institution_id=51)
    with pytest.raises(ValueError):
        website.ensure_website(docker_client, site, proxy)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(website.container_name(site))
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(website.volume_name(site))
    assert not docker_client.networks.list(names=[website.network_name(docker_prefix, 51)])


@pytest.mark.parametrize("route_id", ["Web-1", "web_1", "../web", "web 1", ""])
def test_invalid_route_id_raises(docker_client, proxy, route_id):
    with pytest.raises(ValueError):
        proxy_mod.set_route(docker_client, proxy, route_id, "ok.gov.bi", "up", "net")
    with pytest.raises(ValueError):
        proxy_mod.remove_route(docker_client, proxy, route_id)


def test_archive_normalisation_rejects_links_and_escapes():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ValueError):
        website.normalise_archive(buf.getvalue())
    with pytest.raises(ValueError):
        website.normalise_archive(make_tar({"../escape.html": b"x"}))
    packed = website.normalise_archive(make_tar({"./a/b.html": b"x"}, mode=0o600, uid=1000))
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        member = tar.getmember("a/b.html")
    assert (member.uid, member.gid, member.mode) == (0, 0, 0o644)
