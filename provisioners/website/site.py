"""Static websites: an nginx container per site on its institution's network, behind the proxy.

The content lives in the ``{prefix}-web-{id}-data`` volume, mounted read-only in
the site container, replaced wholesale by :func:`deploy_content` and writable over SFTP
(provisioners/sftp.py): its files belong to ``CONTENT_UID``, the SFTP login. Usage::

    ensure_website(client, site, proxy)       # placeholder page until content arrives
    deploy_content(client, site, tar)         # validated archive (bytes or a path)
    remove_website(client, site, proxy)
"""
from __future__ import annotations

import io
import logging
import os
import secrets
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from provisioners import proxy as proxy_mod
from provisioners.docker import runtime, volumes
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.proxy import ProxySpec

log = logging.getLogger(__name__)

SITE_ROOT = "/srv/site"
NGINX_UID = "33:33"  # www-data: reads the content (0644 files, 0755 dirs), cannot change it
# Owner of the content: the SFTP login (provisioners/sftp.py; fixed in images/sftp), so files
# deployed as an archive stay writable over SFTP and uploads stay readable by nginx.
CONTENT_UID = 2000
CONTENT_GID = 2000
# On content volumes created with that owner (volumes made earlier hold root's files).
LABEL_CONTENT_OWNER = "bi.gov.comgov.content-owner"
TMPFS = {
    "/tmp": "rw,noexec,nosuid,nodev,size=16m",
    "/run": "rw,noexec,nosuid,nodev,size=1m",
}
HELPER_IMAGE = "comgov/base:bookworm"
HELPER_LIMITS = Limits(memory_bytes=256 * 1024 * 1024, nano_cpus=1_000_000_000, pids=64)
# Fixed text, no interpolation: the helper swaps /incoming in as the new site content.
# Root takes everything over first (a sticky directory made over SFTP would otherwise stop
# the delete), and the content owner gets it all back even after a failed copy.
HELPER_SCRIPT = ("chown -R 0:0 /data && find /data -mindepth 1 -delete && "
                 "{ cp -R /incoming/. /data/; status=$?; "
                 f"chown -R {CONTENT_UID}:{CONTENT_GID} /data; exit $status; }}")
ADOPT_SCRIPT = f"chown -R {CONTENT_UID}:{CONTENT_GID} /data"
# Root without DAC_OVERRIDE cannot delete the SFTP login's files; CHOWN hands them back.
HELPER_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE")
HELPER_TIMEOUT = 300
CHUNK = 1024 * 1024  # a deployed archive is streamed into the helper this much at a time


@dataclass(frozen=True)
class WebsiteSpec:
    """One institution's static website, as the provisioner needs to see it."""

    service_id: int
    institution_id: int
    institution: str  # acronym
    hostname: str
    limits: Limits
    prefix: str
    image: str
    extra_labels: dict[str, str] = field(default_factory=dict)
    disk_bytes: int = 0  # 0: plain Docker volume without a size limit
    volumes_root: str = ""  # where quota images live (needed when disk_bytes > 0)


def site_container_name(prefix: str, service_id: int) -> str:
    """Name of a site's nginx container (also its DNS name for the proxy)."""
    return f"{prefix}-web-{service_id}"


def container_name(site: WebsiteSpec) -> str:
    return site_container_name(site.prefix, site.service_id)


def volume_name(site: WebsiteSpec) -> str:
    """Name of the volume holding the site's files."""
    return f"{site.prefix}-web-{site.service_id}-data"


network_name = runtime.institution_network  # one per institution, shared by its services


def route_id(site: WebsiteSpec) -> str:
    """The proxy route (file) serving this site."""
    return f"web-{site.service_id}"


def _labels(site: WebsiteSpec, kind: str = "website") -> dict[str, str]:
    return runtime.labels(
        site.prefix, kind, service_id=site.service_id,
        institution=site.institution, extra=site.extra_labels,
    )


def website_container_spec(site: WebsiteSpec) -> ContainerSpec:
    """The site's nginx container: read-only content, no published port."""
    return ContainerSpec(
        name=container_name(site),
        image=site.image,
        network=network_name(site.prefix, site.institution_id),
        limits=site.limits,
        labels=_labels(site),
        volumes={volume_name(site): (SITE_ROOT, "ro")},
        tmpfs=dict(TMPFS),
        user=NGINX_UID,
    )


def ensure_website(client: docker.DockerClient, site: WebsiteSpec, proxy: ProxySpec) -> None:
    """Converge network, volume, container and route; an empty site shows a placeholder."""
    proxy_mod.validate_hostname(site.hostname)  # before anything is created
    spec = website_container_spec(site)
    log.info("event=website.ensure service=%s host=%s", site.service_id, site.hostname)
    runtime.ensure_institution_network(client, site.prefix, site.institution_id,
                                       site.institution, site.extra_labels)
    _ensure_data_volume(client, site)
    previous = runtime.running_container_id(client, spec.name)  # to notice a (re)start
    # The route file is written while the container starts; nginx reads it only at the
    # reload below, once the container runs (a lookup before that would be cached as failed).
    with ThreadPoolExecutor(max_workers=1) as pool:
        staged = pool.submit(proxy_mod.stage_route, client, proxy, route_id(site),
                             site.hostname, spec.name, spec.network)
        container = runtime.ensure_container(client, spec)
        to_reload = staged.result()
    # Reload when the route changed, and whenever the container was not already running:
    # a route staged by an earlier, failed run is on disk but not loaded yet.
    if to_reload is not None:
        proxy_mod.reload(to_reload)  # the proxy container stage_route already looked up
    elif previous != container.id:
        proxy_mod.reload_proxy(client, site.prefix)


def stop_website(client: docker.DockerClient, site: WebsiteSpec) -> None:
    """Stop serving; the proxy answers its 'service stopped' page meanwhile."""
    runtime.stop_container(client, container_name(site))
    # Without this the proxy keeps the cached address for up to 5 s and requests hang.
    proxy_mod.reload_proxy(client, site.prefix)
    log.info("event=website.stop service=%s", site.service_id)


def start_website(client: docker.DockerClient, site: WebsiteSpec, proxy: ProxySpec) -> None:
    """Start again, re-creating whatever went missing while it was stopped."""
    ensure_website(client, site, proxy)
    log.info("event=website.start service=%s", site.service_id)


def remove_website(client: docker.DockerClient, site: WebsiteSpec, proxy: ProxySpec) -> None:
    """Remove route, container and content; removing a removed site succeeds."""
    proxy_mod.remove_route(client, proxy, route_id(site))
    runtime.remove_container(client, container_name(site))
    if site.volumes_root:  # also removes a plain volume, and a quota left from before
        volumes.remove_quota_volume(client, volume_name(site), Path(site.volumes_root))
    else:
        runtime.remove_volume(client, volume_name(site))
    log.info("event=website.remove service=%s", site.service_id)


def _ensure_data_volume(client: docker.DockerClient, site: WebsiteSpec) -> None:
    """The content volume: size-limited (loop-mounted ext4) when the site has a quota."""
    labels = {**_labels(site), LABEL_CONTENT_OWNER: f"{CONTENT_UID}:{CONTENT_GID}"}
    if site.disk_bytes > 0:
        if not site.volumes_root:
            raise ValueError("disk_bytes needs volumes_root (where the quota images live)")
        volumes.ensure_quota_volume(client, volume_name(site), site.disk_bytes, labels,
                                    Path(site.volumes_root), owner=(CONTENT_UID, CONTENT_GID))
    else:
        runtime.ensure_volume(client, volume_name(site), labels)


def deploy_content(
    client: docker.DockerClient,
    site: WebsiteSpec,
    archive: bytes | str | os.PathLike,
    *,
    helper_image: str = HELPER_IMAGE,
    timeout: int = HELPER_TIMEOUT,
) -> None:
    """Replace the site's files with the archive's, through a short-lived hardened helper.

    `archive`: a tar (optionally compressed) as bytes, or the path of one, which is
    normalised as it is streamed into the helper and never read whole."""
    if isinstance(archive, (bytes, bytearray)):
        body: bytes | Iterator[bytes] = normalise_archive(bytes(archive))
        size = len(body)
    else:
        body = _normalised_chunks_of(Path(archive))
        size = Path(archive).stat().st_size
    log.info("event=website.deploy service=%s bytes=%d", site.service_id, size)
    _run_helper(client, site, "content deployment", HELPER_SCRIPT, body,
                helper_image=helper_image, timeout=timeout)
    log.info("event=website.deployed service=%s", site.service_id)


def adopt_content(
    client: docker.DockerClient,
    site: WebsiteSpec,
    *,
    helper_image: str = HELPER_IMAGE,
    timeout: int = HELPER_TIMEOUT,
) -> None:
    """Give every file to the content owner (content deployed before SFTP was root's)."""
    _run_helper(client, site, "content adoption", ADOPT_SCRIPT, None,
                helper_image=helper_image, timeout=timeout)
    log.info("event=website.adopted service=%s", site.service_id)


def _run_helper(client: docker.DockerClient, site: WebsiteSpec, what: str, script: str,
                archive: bytes | Iterator[bytes] | None, *, helper_image: str,
                timeout: int) -> None:
    """Run a fixed script as root on the content volume (and /incoming, when given: a tar as
    bytes or as chunks, which the Docker API streams into the helper)."""
    _ensure_data_volume(client, site)
    token = secrets.token_hex(4)
    name = f"{container_name(site)}-deploy-{token}"
    incoming = f"{name}-incoming"  # put_archive needs a volume: the root fs is read-only
    mounts = {volume_name(site): ("/data", "rw")}
    if archive is not None:
        runtime.ensure_volume(client, incoming, _labels(site, "deploy"))
        mounts[incoming] = ("/incoming", "rw")
    spec = ContainerSpec(
        name=name,
        image=helper_image,
        network="none",
        limits=HELPER_LIMITS,
        labels=_labels(site, "deploy"),
        command=["sh", "-c", script],
        volumes=mounts,
        user="0:0",
        cap_add=HELPER_CAPABILITIES,
    )
    # A one-shot job must not be restarted by the daemon once it has exited.
    options = {**runtime.hardened_options(spec), "restart_policy": {"Name": "no"}}
    try:
        helper = client.containers.create(**options)
        if archive is not None and not helper.put_archive("/incoming", archive):
            raise RuntimeError(f"put_archive into {name}:/incoming failed")
        helper.start()
        status = helper.wait(timeout=timeout).get("StatusCode")
        if status != 0:
            output = helper.logs(stdout=True, stderr=True, tail=50).decode("utf-8", "replace")
            raise RuntimeError(f"{what} for service {site.service_id} failed "
                               f"(exit {status}): {output.strip()}")
    finally:
        runtime.remove_container(client, name)
        if archive is not None:
            runtime.remove_volume(client, incoming)


def normalise_archive(tar_bytes: bytes) -> bytes:
    """Re-pack as 0644 files / 0755 dirs so nginx (uid 33) reads all; the helper sets the owner."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:*") as src:
        return b"".join(_normalised_chunks(src))


def _normalised_chunks_of(path: Path) -> Iterator[bytes]:
    """`normalise_archive` of the tar at `path`, as chunks of at most about `CHUNK` bytes."""
    with tarfile.open(path, mode="r:*") as src:
        yield from _normalised_chunks(src)


def _normalised_chunks(src: tarfile.TarFile) -> Iterator[bytes]:
    """The normalised tar of `src`, member by member, holding about one `CHUNK` at a time."""
    pending = bytearray()
    member = src.next()
    while member is not None:
        src.members.clear()  # read once, in order: keep memory flat on big archives
        path = member.name
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if path.startswith("/") or ".." in parts:
            raise ValueError(f"unsafe path in archive: {path!r}")
        if not (member.isfile() or member.isdir()):
            raise ValueError(f"archive member is not a file or directory: {path!r}")
        if parts:
            info = tarfile.TarInfo("/".join(parts))
            info.mtime = member.mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if member.isdir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                pending += info.tobuf(tarfile.PAX_FORMAT)
            else:
                info.size, info.mode = member.size, 0o644
                pending += info.tobuf(tarfile.PAX_FORMAT)
                data = src.extractfile(member)
                left = member.size
                while left:
                    if len(pending) >= CHUNK:
                        yield bytes(pending)
                        pending.clear()
                    chunk = data.read(min(CHUNK, left))
                    if not chunk:
                        raise ValueError(f"archive member is truncated: {path!r}")
                    pending += chunk
                    left -= len(chunk)
                pending += tarfile.NUL * (-member.size % tarfile.BLOCKSIZE)
            if len(pending) >= CHUNK:
                yield bytes(pending)
                pending.clear()
        member = src.next()
    pending += tarfile.NUL * (2 * tarfile.BLOCKSIZE)  # end of archive
    yield bytes(pending)
