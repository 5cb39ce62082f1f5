"""Service volumes with a hard size limit: a loop-mounted ext4 image bound as a Docker volume.

A tenant filling its volume gets ENOSPC inside its own filesystem instead of filling the
host's disk. Layout under ``root`` (``instance/volumes`` in the app)::

    root/<name>.img    sparse image file (mode 0600), ext4, reserved blocks 0
    root/<name>.mnt    its mount point (immutable while unmounted: nothing lands on the host)

Usage::

    vol = ensure_quota_volume(client, "comgov-db-42-data", 1 << 30, labels, root)
    used, size = volume_usage(root, "comgov-db-42-data")
    remount_all(root)                                   # at platform start, after a reboot
    remove_quota_volume(client, "comgov-db-42-data", root)
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors
from docker.models.volumes import Volume

log = logging.getLogger(__name__)

MOUNT_OPTIONS = "loop,nodev,nosuid,noexec"
MIN_SIZE = 16 * 1024 * 1024  # ext4 with a journal is not worth having below this
COMMAND_TIMEOUT = 300
UMOUNT_ATTEMPTS = 10
UMOUNT_DELAY = 0.3
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,199}$")
_OCTAL_RE = re.compile(r"\\([0-7]{3})")


class QuotaVolumeError(RuntimeError):
    """A quota volume cannot be brought to the wanted state (the message says why)."""


def _paths(root: Path, name: str) -> tuple[Path, Path, Path]:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid volume name {name!r}")
    root = Path(os.path.realpath(root))  # /proc/self/mountinfo shows resolved paths
    return root / f"{name}.img", root / f"{name}.mnt", root / f"{name}.grow"


def ensure_quota_volume(
    client: docker.DockerClient,
    name: str,
    size_bytes: int,
    labels: dict[str, str],
    root: Path,
    *,
    owner: tuple[int, int] | None = None,
) -> Volume:
    """Create, mount, grow and bind the volume; twice = same volume, shrinking is refused.

    ``owner`` (uid, gid) gets the filesystem's root directory, so a non-root service can
    write to it without any capability.
    """
    if size_bytes < MIN_SIZE:
        raise ValueError(f"quota volume {name}: size {size_bytes} is below {MIN_SIZE} bytes")
    image, mountpoint, grow_marker = _paths(root, name)
    with _locked(image.parent):
        if not image.exists():
            _create_image(image, size_bytes, owner)
        current = image.stat().st_size
        if size_bytes < current:
            raise QuotaVolumeError(
                f"quota volume {name} is {current} bytes; shrinking to {size_bytes} is not "
                "supported (back the data up, remove the volume and restore into a new one)")
        if size_bytes > current:
            grow_marker.touch(mode=0o600)  # survives a crash between truncate and resize2fs
            os.truncate(image, size_bytes)
        _ensure_mounted(image, mountpoint)
        if grow_marker.exists():
            _grow(name, mountpoint, size_bytes)
            grow_marker.unlink()
        if owner is not None:
            os.chown(mountpoint, *owner)  # the mounted filesystem's root directory
        return _ensure_docker_volume(client, name, mountpoint, labels)


def remove_quota_volume(client: docker.DockerClient, name: str, root: Path) -> None:
    """Remove the Docker volume, unmount, delete the image; what is already gone is fine.

    A container still using the volume makes the Docker removal fail: remove it first.
    """
    image, mountpoint, grow_marker = _paths(root, name)
    try:
        client.volumes.get(name).remove(force=True)
        log.info("event=volume.remove volume=%s", name)
    except docker.errors.NotFound:
        pass
    if not image.parent.is_dir():
        return
    with _locked(image.parent):
        if _mount_at(mountpoint) is not None:
            _unmount(mountpoint)
        if mountpoint.exists():
            _set_immutable(mountpoint, False)
            mountpoint.rmdir()
        image.unlink(missing_ok=True)
        grow_marker.unlink(missing_ok=True)
    log.info("event=quota.remove volume=%s", name)


def volume_usage(root: Path, name: str) -> tuple[int, int]:
    """(used_bytes, size_bytes) of the mounted filesystem, as the tenant sees it."""
    _, mountpoint, _ = _paths(root, name)
    if _mount_at(mountpoint) is None:
        raise QuotaVolumeError(f"quota volume {name} is not mounted at {mountpoint}")
    st = os.statvfs(mountpoint)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def remount_all(root: Path) -> list[str]:
    """Mount every image under root (after a reboot), finishing interrupted grows."""
    root = Path(os.path.realpath(root))
    if not root.is_dir():
        return []
    names = []
    with _locked(root):
        for image in sorted(root.glob("*.img")):
            name = image.name[: -len(".img")]
            _, mountpoint, grow_marker = _paths(root, name)
            _ensure_mounted(image, mountpoint)
            if grow_marker.exists():
                _grow(name, mountpoint, image.stat().st_size)
                grow_marker.unlink()
            names.append(name)
    log.info("event=quota.remount_all root=%s volumes=%d", root, len(names))
    return names


def unmount_all(root: Path) -> list[str]:
    """Unmount every image under root, keeping the images (platform stop, test teardown).

    Afterwards the directory tree can be deleted like any other (nothing mounted, nothing
    immutable). Containers still using a volume keep it alive until they stop.
    """
    root = Path(os.path.realpath(root))
    if not root.is_dir():
        return []
    names = []
    with _locked(root):
        for image in sorted(root.glob("*.img")):
            name = image.name[: -len(".img")]
            _, mountpoint, _ = _paths(root, name)
            if _mount_at(mountpoint) is not None:
                _unmount(mountpoint)
                names.append(name)
            if mountpoint.exists():
                _set_immutable(mountpoint, False)
    log.info("event=quota.unmount_all root=%s volumes=%d", root, len(names))
    return names


def is_mounted(root: Path, name: str) -> bool:
    """Whether the volume's filesystem is mounted (a Docker bind would otherwise be empty)."""
    return _mount_at(_paths(root, name)[1]) is not None


# --- internals ---------------------------------------------------------------------------

@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One lock per root: workers must not mkfs or mount the same image concurrently."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT)
    if result.returncode != 0:
        raise QuotaVolumeError(f"{' '.join(argv)} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()}")
    return result.stdout


def _create_image(image: Path, size_bytes: int, owner: tuple[int, int] | None) -> None:
    """Sparse file + mkfs under a temporary name, so an existing image is always formatted."""
    staging = image.with_name(image.name + ".tmp")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size_bytes)
    finally:
        os.close(fd)
    uid, gid = owner or (0, 0)
    try:
        # 4 KiB blocks even when small, so the filesystem can later grow a long way online.
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-b", "4096", "-i", "8192",
              "-E", f"root_owner={uid}:{gid}", str(staging)])
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.rename(staging, image)
    log.info("event=quota.create image=%s bytes=%d", image, size_bytes)


@contextmanager
def temporary_filesystem(image: Path, mountpoint: Path, size_bytes: int) -> Iterator[Path]:
    """A throwaway ext4 of `size_bytes` (sparse, no journal), loop-mounted nodev,nosuid,noexec
    at `mountpoint` (mode 0700): writes past the size fail with ENOSPC instead of filling the
    host's disk. Unmounted and deleted on exit. Needs root, like quota volumes."""
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size_bytes)
    finally:
        os.close(fd)
    mounted = False
    try:
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-b", "4096",
              str(image)])
        mountpoint.mkdir(mode=0o700)
        _run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(mountpoint)])
        mounted = True
        os.chmod(mountpoint, 0o700)
        log.info("event=volume.temporary mount=%s bytes=%d", mountpoint, size_bytes)
        yield mountpoint
    finally:
        if mounted:
            _unmount(mountpoint)
        if mountpoint.exists():
            mountpoint.rmdir()
        image.unlink(missing_ok=True)


def _ensure_mounted(image: Path, mountpoint: Path) -> None:
    try:
        mountpoint.mkdir(mode=0o700)
    except FileExistsError:
        pass
    found = _mount_at(mountpoint)
    if found is not None:
        backing = _backing_file(found)
        if backing != str(image):
            raise QuotaVolumeError(f"{mountpoint} is mounted from {backing or found!r}, "
                                   f"not from {image}")
        return
    # While unmounted the directory stays empty and unwritable, even for root: a
    # container started before the remount fails instead of writing to the host disk.
    _set_immutable(mountpoint, True)
    _run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(mountpoint)])
    log.info("event=quota.mount image=%s mountpoint=%s", image, mountpoint)


def _grow(name: str, mountpoint: Path, size_bytes: int) -> None:
    """Grow ext4 into the enlarged image: online if the kernel lets us, else offline."""
    found = _mount_at(mountpoint)
    if found is None:
        raise QuotaVolumeError(f"quota volume {name} is not mounted; cannot grow it")
    device = _device_path(found)
    _run(["losetup", "--set-capacity", device])
    try:
        _run(["resize2fs", device])  # online: needs CAP_SYS_RESOURCE
    except QuotaVolumeError as exc:
        if _mount_count(found) > 1:  # Docker's bind for a container: cannot unmount
            raise QuotaVolumeError(f"quota volume {name} cannot grow while in use ({exc}); "
                                   "stop its service and ensure again") from exc
        log.info("event=quota.grow_offline volume=%s reason=%r", name, str(exc))
        _grow_offline(name, Path(_backing_file(found) or ""), mountpoint)
    log.info("event=quota.grow volume=%s bytes=%d", name, size_bytes)


def _grow_offline(name: str, image: Path, mountpoint: Path) -> None:
    """Unmount, check, resize the image file, mount again; only when nothing else uses it."""
    _run(["umount", str(mountpoint)])
    try:
        deadline = time.monotonic() + 5
        while _run(["losetup", "--associated", str(image)]).strip():  # autoclear may lag
            if time.monotonic() > deadline:
                raise QuotaVolumeError(f"quota volume {name} is still in use; cannot grow it")
            time.sleep(0.05)
        result = subprocess.run(["e2fsck", "-f", "-p", str(image)], capture_output=True,
                                text=True, check=False, stdin=subprocess.DEVNULL,
                                timeout=COMMAND_TIMEOUT)
        if result.returncode >= 4:  # 1 and 2: errors corrected
            raise QuotaVolumeError(f"e2fsck {image} failed ({result.returncode}): "
                                   f"{(result.stderr or result.stdout).strip()}")
        _run(["resize2fs", str(image)])
    finally:
        _ensure_mounted(image, mountpoint)


def _unmount(mountpoint: Path) -> None:
    """Unmount, retrying while busy (a container just removed), then detach lazily."""
    for _ in range(UMOUNT_ATTEMPTS):
        result = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True,
                                check=False, stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT)
        if result.returncode == 0 or _mount_at(mountpoint) is None:
            return
        time.sleep(UMOUNT_DELAY)
    log.warning("event=quota.umount_lazy mountpoint=%s", mountpoint)
    _run(["umount", "--lazy", str(mountpoint)])


def _set_immutable(path: Path, on: bool) -> None:
    try:
        _run(["chattr", "+i" if on else "-i", str(path)])
    except QuotaVolumeError as exc:  # e.g. a filesystem without the attribute
        log.warning("event=quota.chattr_failed path=%s error=%r", path, str(exc))


def _mount_at(path: Path) -> str | None:
    """major:minor of the filesystem mounted (last, i.e. on top) exactly at path, or None."""
    wanted = str(path)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if _unescape(fields[4]) == wanted:
                found = fields[2]
    return found


def _mount_count(majmin: str) -> int:
    """How many mounts (ours, Docker's volume binds) show this filesystem here."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.split()[2] == majmin)


def _unescape(field: str) -> str:
    return _OCTAL_RE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _backing_file(majmin: str) -> str | None:
    try:
        text = Path(f"/sys/dev/block/{majmin}/loop/backing_file").read_text(encoding="utf-8")
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    return text.strip()


def _device_path(majmin: str) -> str:
    uevent = Path(f"/sys/dev/block/{majmin}/uevent").read_text(encoding="utf-8")
    for line in uevent.splitlines():
        if line.startswith("DEVNAME="):
            return "/dev/" + line.split("=", 1)[1]
    raise QuotaVolumeError(f"no device node for block device {majmin}")


def _ensure_docker_volume(
    client: docker.DockerClient, name: str, mountpoint: Path, labels: dict[str, str]
) -> Volume:
    try:
        volume = client.volumes.get(name)
    except docker.errors.NotFound:
        volume = None
    if volume is None:
        try:
            volume = client.volumes.create(
                name=name, driver="local", labels=dict(labels),
                driver_opts={"type": "none", "o": "bind", "device": str(mountpoint)},
            )
            log.info("event=volume.create volume=%s device=%s", name, mountpoint)
            return volume
        except docker.errors.APIError as exc:
            if exc.status_code != 409 and "already exists" not in str(exc):
                raise
            volume = client.volumes.get(name)
    options = volume.attrs.get("Options") or {}
    if options.get("device") != str(mountpoint) or options.get("o") != "bind":
        raise QuotaVolumeError(
            f"volume {name} exists but is not bound to its quota filesystem {mountpoint}; "
            "copy its data out and remove it before enabling the quota")
    return volume
