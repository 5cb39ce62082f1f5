"""Usage metering: one cheap sweep of every managed container, read straight from the kernel.

``docker stats`` asks the daemon container by container and waits for two samples each;
on a host with hundreds of tenants that takes seconds. Here one list call gives the
containers (ids, labels, mounts) and everything else comes from cgroup and proc files.
Usage::

    before = sweep(client, prefix="comgov", volumes_root="/srv/comgov/volumes")
    after = sweep(client, prefix="comgov", volumes_root="/srv/comgov/volumes")
    by_id = {s.container_id: s for s in before}
    for b in after:
        if b.container_id in by_id:
            print(b.name, cpu_seconds_between(by_id[b.container_id], b))

Memory is "in use" memory as ``docker stats`` shows it: usage minus the inactive page
cache (``memory.usage_in_bytes - total_inactive_file`` on cgroup v1, ``memory.current -
inactive_file`` on v2), so both hierarchies report the same thing and reclaimable cache
does not count against a tenant. Block I/O on cgroup v1 with kernels >= 6.10 is only
accounted once blk-throttle is active on the device (some container has an I/O limit on
it); until then the v1 counters stay at 0.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from provisioners.docker import runtime

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
# Where the cgroupfs and systemd drivers put a container, per hierarchy.
V1_PATTERNS = ("docker/{id}", "system.slice/docker-{id}.scope")
V2_PATTERNS = ("system.slice/docker-{id}.scope", "docker/{id}")
V1_CPU_DIRS = ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")


@dataclass(frozen=True)
class Sample:
    """Cumulative counters of one container at one instant; rates come from two samples."""

    container_id: str
    name: str
    service_id: int | None
    institution: str | None
    kind: str | None
    cpu_ns: int
    memory_bytes: int
    net_rx: int | None  # None when no process is left to read the namespace from
    net_tx: int | None
    blk_read: int
    blk_write: int
    disk_used: int | None  # None when no volume is its own (quota) filesystem
    disk_size: int | None
    at: float  # time.time()


@dataclass(frozen=True)
class Target:
    """A container as the single list call describes it."""

    container_id: str
    name: str
    labels: dict[str, str]
    mounts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CgroupDirs:
    """The cgroup directories of one container (all the same path on v2)."""

    cpu: Path
    memory: Path
    io: Path
    version: int


@dataclass(frozen=True)
class Counters:
    """What the kernel files say about one container."""

    cpu_ns: int
    memory_bytes: int
    blk_read: int
    blk_write: int
    net_rx: int | None
    net_tx: int | None


def cgroup_version(root: Path | str = CGROUP_ROOT) -> int:
    """2 when the unified hierarchy is mounted at the root (hybrid hosts count as v1)."""
    return 2 if (Path(root) / "cgroup.controllers").exists() else 1


def cgroup_dirs(container_id: str, root: Path | str = CGROUP_ROOT,
                version: int | None = None) -> CgroupDirs | None:
    """Find the container's cgroup for the cgroupfs or systemd driver; None if absent."""
    root = Path(root)
    version = version or cgroup_version(root)
    if version == 2:
        for pattern in V2_PATTERNS:
            path = root / pattern.format(id=container_id)
            if path.is_dir():
                return CgroupDirs(path, path, path, 2)
        return None
    cpu_root = next((root / d for d in V1_CPU_DIRS if (root / d).is_dir()), root / "cpuacct")
    for pattern in V1_PATTERNS:
        relative = pattern.format(id=container_id)
        if (cpu_root / relative).is_dir():
            return CgroupDirs(cpu_root / relative, root / "memory" / relative,
                              root / "blkio" / relative, 1)
    return None


def cgroup_dirs_from_pid(pid: int, root: Path | str = CGROUP_ROOT,
                         proc_root: Path | str = PROC_ROOT,
                         version: int | None = None) -> CgroupDirs | None:
    """Slow path for unusual parents (--cgroup-parent, nesting): ask /proc/<pid>/cgroup."""
    root = Path(root)
    version = version or cgroup_version(root)
    try:
        text = (Path(proc_root) / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    paths: dict[str, Path] = {}
    for line in text.splitlines():
        _hier, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if version == 2 and controllers == "":
            return CgroupDirs(root / relative, root / relative, root / relative, 2)
        for ctrl in controllers.split(","):
            if ctrl in ("cpuacct", "memory", "blkio"):
                mount = next((root / d for d in (controllers, ctrl) if (root / d).is_dir()),
                             root / ctrl)
                paths[ctrl] = mount / relative
    if version == 1 and {"cpuacct", "memory", "blkio"} <= paths.keys():
        return CgroupDirs(paths["cpuacct"], paths["memory"], paths["blkio"], 1)
    return None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat) as a dict."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            result[parts[0]] = int(parts[1])
    return result


def parse_io_service_bytes(text: str) -> tuple[int, int]:
    """(read, write) bytes summed over devices from v1 blkio.throttle.io_service_bytes."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
    return read, write


def parse_io_stat(text: str) -> tuple[int, int]:
    """(read, write) bytes summed over devices from v2 io.stat."""
    read = write = 0
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return read, write


def parse_net_dev(text: str) -> tuple[int, int]:
    """(received, transmitted) bytes over every interface but loopback."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or name.strip() == "lo" or len(fields) < 9:
            continue
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def read_counters(dirs: CgroupDirs, proc_root: Path | str = PROC_ROOT) -> Counters:
    """Read one container's counters; OSError when it vanishes meanwhile."""
    if dirs.version == 2:
        cpu_ns = parse_flat_keyed(_read(dirs.cpu / "cpu.stat")).get("usage_usec", 0) * 1000
        usage = int(_read(dirs.memory / "memory.current"))
        inactive = parse_flat_keyed(_read(dirs.memory / "memory.stat")).get("inactive_file", 0)
        blk_read, blk_write = parse_io_stat(_read_optional(dirs.io / "io.stat"))
    else:
        cpu_ns = int(_read(dirs.cpu / "cpuacct.usage"))
        usage = int(_read(dirs.memory / "memory.usage_in_bytes"))
        stat = parse_flat_keyed(_read(dirs.memory / "memory.stat"))
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        io_text = _read_optional(dirs.io / "blkio.throttle.io_service_bytes_recursive")
        if not io_text:
            io_text = _read_optional(dirs.io / "blkio.throttle.io_service_bytes")
        blk_read, blk_write = parse_io_service_bytes(io_text)
    net_rx = net_tx = None
    # Every process of the container shares its network namespace, so any pid will do.
    for pid in _read(dirs.cpu / "cgroup.procs").split():
        try:
            net_rx, net_tx = parse_net_dev(_read(Path(proc_root) / pid / "net" / "dev"))
            break
        except OSError:
            continue  # that process just exited; try the next one
    memory = usage - inactive if inactive < usage else usage
    return Counters(cpu_ns, memory, blk_read, blk_write, net_rx, net_tx)


def volume_usage(mounts: list[dict[str, Any]], volumes_root: Path | str | None = None,
                 cache: dict[str, tuple[int, int, int] | None] | None = None
                 ) -> tuple[int | None, int | None]:
    """(used, size) summed over the mounts that are their own filesystem (quota volumes).

    A plain Docker volume shares the host's filesystem, so statvfs would describe the
    host, not the tenant: it is left out, and a container with only those gets None.
    """
    cache = {} if cache is None else cache
    filesystems: dict[int, tuple[int, int]] = {}  # by device: one volume mounted twice
    for mount in mounts:
        for path in _volume_paths(mount, volumes_root):
            if path not in cache:
                cache[path] = _statvfs(path)
            if cache[path] is not None:
                device, used, size = cache[path]
                filesystems[device] = (used, size)
                break
    if not filesystems:
        return None, None
    return sum(u for u, _ in filesystems.values()), sum(s for _, s in filesystems.values())


def list_targets(client: docker.DockerClient, prefix: str | None = None) -> list[Target]:
    """Running managed containers, from one list call (labels and mounts included)."""
    wanted = [f"{runtime.LABEL_MANAGED}=1"]
    if prefix is not None:
        wanted.append(f"{runtime.LABEL_PREFIX}={prefix}")
    rows = client.api.containers(filters={"label": wanted, "status": "running"})
    return [Target(container_id=row["Id"],
                   name=(row.get("Names") or ["/" + row["Id"][:12]])[0].lstrip("/"),
                   labels=row.get("Labels") or {}, mounts=row.get("Mounts") or [])
            for row in rows]


def sample_targets(
    targets: list[Target],
    volumes_root: Path | str | None = None,
    *,
    client: docker.DockerClient | None = None,
    root: Path | str = CGROUP_ROOT,
    proc_root: Path | str = PROC_ROOT,
) -> list[Sample]:
    """Read the counters of each target; ones gone meanwhile are skipped, not errors.

    ``client`` is only used for containers under a non-standard cgroup parent (one inspect
    each, to learn a pid); without it they are skipped.
    """
    version = cgroup_version(root)
    disk_cache: dict[str, tuple[int, int, int] | None] = {}
    samples = []
    for target in targets:
        dirs = cgroup_dirs(target.container_id, root, version)
        if dirs is None and client is not None:
            dirs = _dirs_by_inspect(client, target, root, proc_root, version)
        if dirs is None:
            log.info("event=metering.skip container=%s reason=no_cgroup", target.name)
            continue
        try:
            counters = read_counters(dirs, proc_root)
        except (OSError, ValueError) as exc:
            log.info("event=metering.skip container=%s reason=%s", target.name,
                     type(exc).__name__)
            continue
        disk_used, disk_size = volume_usage(target.mounts, volumes_root, disk_cache)
        samples.append(Sample(
            container_id=target.container_id, name=target.name,
            service_id=_int_or_none(target.labels.get(runtime.LABEL_SERVICE)),
            institution=target.labels.get(runtime.LABEL_INSTITUTION),
            kind=target.labels.get(runtime.LABEL_KIND),
            cpu_ns=counters.cpu_ns, memory_bytes=counters.memory_bytes,
            net_rx=counters.net_rx, net_tx=counters.net_tx,
            blk_read=counters.blk_read, blk_write=counters.blk_write,
            disk_used=disk_used, disk_size=disk_size, at=time.time(),
        ))
    return samples


def sweep(client: docker.DockerClient, prefix: str | None = None,
          volumes_root: Path | str | None = None) -> list[Sample]:
    """One sample per running managed container: one list call, then kernel files only."""
    started = time.monotonic()
    samples = sample_targets(list_targets(client, prefix), volumes_root, client=client)
    log.info("event=metering.sweep containers=%d seconds=%.3f", len(samples),
             time.monotonic() - started)
    return samples


def cpu_seconds_between(a: Sample, b: Sample) -> float:
    """CPU seconds used from a to b; a restart resets the counter, so count from zero then."""
    delta = b.cpu_ns - a.cpu_ns
    return (delta if delta >= 0 else b.cpu_ns) / 1e9


def cpu_percent_between(a: Sample, b: Sample) -> float:
    """Average CPU use from a to b, in percent of one core (200 = two cores busy)."""
    elapsed = b.at - a.at
    return 100.0 * cpu_seconds_between(a, b) / elapsed if elapsed > 0 else 0.0


def rate_between(a: Sample, b: Sample, counter: str) -> float | None:
    """Bytes per second of a cumulative counter (net_rx, net_tx, blk_read, blk_write)."""
    before, after = getattr(a, counter), getattr(b, counter)
    elapsed = b.at - a.at
    if before is None or after is None or elapsed <= 0:
        return None
    delta = after - before
    return (delta if delta >= 0 else after) / elapsed


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _read_optional(path: Path) -> str:
    try:
        return _read(path)
    except FileNotFoundError:
        return ""


def _volume_paths(mount: dict[str, Any], volumes_root: Path | str | None) -> list[str]:
    """Where a mount's own file system may be: <root>/<name>.mnt, <root>/<name>, its source.

    <root>/<name>.mnt is provisioners.docker.volumes' layout; the source is the bind Docker makes of
    it while a container uses it. A bind mount counts only under volumes_root, so that binding some host mount point
    (a socket directory, /sys/fs/cgroup) is never reported as the tenant's disk.
    """
    source = mount.get("Source") or ""
    if mount.get("Type") == "volume":
        name = mount.get("Name")
        paths = [os.path.join(volumes_root, name + ".mnt"), os.path.join(volumes_root, name)] \
            if volumes_root is not None and name else []
        return paths + ([source] if source else [])
    if mount.get("Type") == "bind" and volumes_root is not None and source:
        root = os.path.join(os.path.abspath(volumes_root), "")
        if os.path.abspath(source).startswith(root):
            return [source]
    return []


def _statvfs(path: str) -> tuple[int, int, int] | None:
    """(device, used, size) like df, only for a mount point: else it is the host's disk."""
    try:
        if not os.path.ismount(path):
            return None
        device = os.stat(path).st_dev
        st = os.statvfs(path)
    except OSError:
        return None
    return device, (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_blocks * st.f_frsize


def _dirs_by_inspect(client: docker.DockerClient, target: Target, root: Path | str,
                     proc_root: Path | str, version: int) -> CgroupDirs | None:
    try:
        pid = client.api.inspect_container(target.container_id)["State"]["Pid"]
    except docker.errors.APIError:  # NotFound: removed since the list call
        return None
    return cgroup_dirs_from_pid(pid, root, proc_root, version) if pid else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
