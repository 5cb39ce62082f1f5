"""Quota volumes on real loop devices and a real Docker Engine: the size limit holds."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import docker.errors
import pytest

from provisioners.docker import runtime, volumes
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.docker.volumes import QuotaVolumeError
from provisioners.images.build import IMAGES_DIR
from provisioners.proxy import ProxySpec
from provisioners.website import site as website
from provisioners.website.site import WebsiteSpec

pytestmark = pytest.mark.docker

TEST_LABELS = {"bi.gov.comgov.test": "1"}
BASE_IMAGE = "comgov/base:bookworm"
NGINX_IMAGE = "comgov/nginx:bookworm"
NGINX_DIR = IMAGES_DIR / "nginx"
MiB = 1024 * 1024
LIMITS = Limits(memory_bytes=64 * MiB, nano_cpus=500_000_000, pids=64)
OWNER = (1000, 1000)


@pytest.fixture
def root(tmp_path):
    """The test's volumes root; whatever stays mounted is unmounted so tmp dirs can go."""
    root = tmp_path / "volumes"
    yield root
    volumes.unmount_all(root)


@pytest.fixture
def made(docker_client, root):
    """Record (container and volume names) to remove whatever a test leaves behind."""
    created: dict[str, list[str]] = {"containers": [], "volumes": []}
    yield created
    for name in created["containers"]:
        runtime.remove_container(docker_client, name)
    for name in created["volumes"]:
        volumes.remove_quota_volume(docker_client, name, root)


def vol_labels(prefix: str) -> dict[str, str]:
    return runtime.labels(prefix, "test-volume", extra=TEST_LABELS)


def host_bytes_outside_images(directory: Path) -> int:
    """Disk blocks under directory, not descending into mounts and not counting images."""
    device = directory.stat().st_dev
    total = 0
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).stat().st_dev == device]
        for name in filenames:
            if not name.endswith(".img"):
                total += (Path(dirpath) / name).lstat().st_blocks * 512
    return total


def start_sleeper(client, prefix: str, name: str, volume: str, made):
    spec = ContainerSpec(name=f"{prefix}-{name}", image=BASE_IMAGE, network="none",
                         limits=LIMITS, labels=runtime.labels(prefix, "test", extra=TEST_LABELS),
                         command=["sleep", "600"], volumes={volume: ("/data", "rw")},
                         user=f"{OWNER[0]}:{OWNER[1]}")
    made["containers"].append(spec.name)
    return runtime.ensure_container(client, spec)


def test_quota_stops_writes_at_the_limit(docker_client, docker_prefix, root, made):
    name = f"{docker_prefix}-vq-1"
    made["volumes"].append(name)
    volumes.ensure_quota_volume(docker_client, name, 32 * MiB, vol_labels(docker_prefix), root,
                                owner=OWNER)
    image = root / f"{name}.img"
    assert image.stat().st_mode & 0o777 == 0o600
    before = host_bytes_outside_images(root.parent)
    container = start_sleeper(docker_client, docker_prefix, "vq-c1", name, made)

    result = container.exec_run(["dd", "if=/dev/zero", "of=/data/fill", "bs=1M", "count=64"])
    assert result.exit_code != 0
    assert b"No space left on device" in result.output

    container.reload()
    assert container.status == "running"
    assert container.exec_run(["true"]).exit_code == 0
    used, size = volumes.volume_usage(root, name)
    assert size <= 32 * MiB and used >= size - 2 * MiB  # full, and no bigger than asked
    assert host_bytes_outside_images(root.parent) - before < 64 * 1024  # nothing leaked out
    assert image.stat().st_blocks * 512 <= 33 * MiB  # the image never outgrows its size
    mounts = container.exec_run(["cat", "/proc/self/mounts"]).output.decode()
    data_line = next(line for line in mounts.splitlines() if " /data " in line)
    assert {"nosuid", "nodev", "noexec"} <= set(data_line.split()[3].split(","))


def test_ensure_is_convergent_and_grows_online(docker_client, docker_prefix, root, made):
    name = f"{docker_prefix}-vq-2"
    made["volumes"].append(name)
    labels = vol_labels(docker_prefix)
    first = volumes.ensure_quota_volume(docker_client, name, 32 * MiB, labels, root)
    image = root / f"{name}.img"
    inode = image.stat().st_ino
    (root / f"{name}.mnt" / "kept.txt").write_text("kept")
    again = volumes.ensure_quota_volume(docker_client, name, 32 * MiB, labels, root)
    assert again.id == first.id and image.stat().st_ino == inode
    assert first.attrs["Options"] == {"type": "none", "o": "bind",
                                      "device": str(root.resolve() / f"{name}.mnt")}
    assert first.attrs["Labels"][runtime.LABEL_PREFIX] == docker_prefix

    _, small = volumes.volume_usage(root, name)
    volumes.ensure_quota_volume(docker_client, name, 64 * MiB, labels, root)
    _, grown = volumes.volume_usage(root, name)
    assert grown > small + 24 * MiB
    assert (root / f"{name}.mnt" / "kept.txt").read_text() == "kept"
    with pytest.raises(QuotaVolumeError, match="shrinking"):
        volumes.ensure_quota_volume(docker_client, name, 32 * MiB, labels, root)

    # A grow interrupted after the truncate is finished by the next remount/ensure.
    os.truncate(image, 96 * MiB)
    (root / f"{name}.grow").touch()
    assert name in volumes.remount_all(root)
    assert volumes.volume_usage(root, name)[1] > grown + 24 * MiB
    assert not (root / f"{name}.grow").exists()


def test_plain_volume_of_the_same_name_is_refused(docker_client, docker_prefix, root, made):
    name = f"{docker_prefix}-vq-3"
    made["volumes"].append(name)
    runtime.ensure_volume(docker_client, name, vol_labels(docker_prefix))
    with pytest.raises(QuotaVolumeError, match="not bound to its quota filesystem"):
        volumes.ensure_quota_volume(docker_client, name, 32 * MiB, vol_labels(docker_prefix),
                                    root)


def test_removal_is_idempotent(docker_client, docker_prefix, root, made):
    name = f"{docker_prefix}-vq-4"
    volumes.ensure_quota_volume(docker_client, name, 32 * MiB, vol_labels(docker_prefix), root)
    container = start_sleeper(docker_client, docker_prefix, "vq-c4", name, made)
    with pytest.raises(docker.errors.APIError):  # in use: the container goes first
        volumes.remove_quota_volume(docker_client, name, root)
    runtime.remove_container(docker_client, container.name)
    volumes.remove_quota_volume(docker_client, name, root)
    volumes.remove_quota_volume(docker_client, name, root)
    assert not volumes.is_mounted(root, name)
    assert sorted(p.name for p in root.iterdir()) == [".lock"]
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(name)
    volumes.remove_quota_volume(docker_client, f"{docker_prefix}-never", root / "absent")


def test_remount_after_manual_umount(docker_client, docker_prefix, root, made):
    import subprocess

    name = f"{docker_prefix}-vq-5"
    made["volumes"].append(name)
    labels = vol_labels(docker_prefix)
    volumes.ensure_quota_volume(docker_client, name, 32 * MiB, labels, root)
    mountpoint = root / f"{name}.mnt"
    (mountpoint / "data.txt").write_text("on the quota filesystem")
    subprocess.run(["umount", str(mountpoint)], check=True)
    assert not volumes.is_mounted(root, name)
    with pytest.raises(PermissionError):  # immutable while unmounted, even for root
        (mountpoint / "stray.txt").write_text("would land on the host disk")
    with pytest.raises(QuotaVolumeError, match="not mounted"):
        volumes.volume_usage(root, name)

    assert volumes.remount_all(root) == [name]
    assert (mountpoint / "data.txt").read_text() == "on the quota filesystem"
    assert volumes.remount_all(root) == [name]  # already mounted: nothing stacked
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        assert sum(f" {mountpoint} " in line for line in fh) == 1

    subprocess.run(["umount", str(mountpoint)], check=True)
    volumes.ensure_quota_volume(docker_client, name, 32 * MiB, labels, root)  # ensure remounts
    container = start_sleeper(docker_client, docker_prefix, "vq-c5", name, made)
    assert container.exec_run(["cat", "/data/data.txt"]).output == b"on the quota filesystem"


def test_unmount_all_leaves_a_deletable_tree(docker_client, docker_prefix, root):
    import shutil

    names = [f"{docker_prefix}-vq-6", f"{docker_prefix}-vq-7"]
    for name in names:
        volumes.ensure_quota_volume(docker_client, name, 16 * MiB, vol_labels(docker_prefix),
                                    root)
    try:
        assert volumes.unmount_all(root) == sorted(names)
        assert not any(volumes.is_mounted(root, name) for name in names)
        assert volumes.remount_all(root) == sorted(names)  # the images were kept
        volumes.unmount_all(root)
        shutil.rmtree(root)
    finally:
        for name in names:
            volumes.remove_quota_volume(docker_client, name, root)


def test_invalid_names_and_sizes(docker_client, root):
    with pytest.raises(ValueError):
        volumes.ensure_quota_volume(docker_client, "../escape", 32 * MiB, {}, root)
    with pytest.raises(ValueError):
        volumes.ensure_quota_volume(docker_client, "tiny", 1 * MiB, {}, root)


# --- websites with a disk quota ---------------------------------------------------------------

@pytest.fixture(scope="module")
def nginx_image(docker_client) -> str:
    try:
        docker_client.images.get(NGINX_IMAGE)
    except docker.errors.ImageNotFound:
        docker_client.images.build(path=str(NGINX_DIR), tag=NGINX_IMAGE, rm=True)
    return NGINX_IMAGE


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_website_content_is_size_limited(docker_client, docker_prefix, proxy_port, nginx_image,
                                         root):
    proxy = ProxySpec(prefix=docker_prefix, image=nginx_image, bind="127.0.0.1",
                      port=proxy_port, limits=LIMITS, extra_labels=TEST_LABELS)
    site = WebsiteSpec(service_id=61, institution_id=61, institution="MSPLS",
                       hostname="quota.minisante.gov.bi", limits=LIMITS, prefix=docker_prefix,
                       image=nginx_image, extra_labels=TEST_LABELS, disk_bytes=32 * MiB,
                       volumes_root=str(root))
    volume = website.volume_name(site)
    try:
        website.ensure_website(docker_client, site, proxy)
        assert docker_client.volumes.get(volume).attrs["Options"]["device"] == str(
            root.resolve() / f"{volume}.mnt")
        with pytest.raises(RuntimeError, match="No space left"):
            website.deploy_content(docker_client, site,
                                   make_tar({"big.bin": os.urandom(40 * MiB)}))
        website.deploy_content(docker_client, site, make_tar({"index.html": b"<p>fits</p>"}))
        container = docker_client.containers.get(website.container_name(site))
        assert container.exec_run(["cat", "/srv/site/index.html"]).output == b"<p>fits</p>"
        assert volumes.volume_usage(root, volume)[0] < 4 * MiB  # the failed copy was replaced
    finally:
        website.remove_website(docker_client, site, proxy)
    assert not (root / f"{volume}.img").exists()
    website.remove_website(docker_client, site, proxy)
