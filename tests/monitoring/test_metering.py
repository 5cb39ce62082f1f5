"""Usage metering: kernel counters of real containers, and the cgroup layouts on fake trees."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import docker.errors
import pytest

from provisioners.docker import metering, runtime
from provisioners.docker.metering import Sample, Target
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.images import build as images

TEST_LABELS = {"bi.gov.comgov.test": "1"}
BASE_IMAGE = images.BASE_IMAGE
SMALL = Limits(memory_bytes=16 * 1024 * 1024, nano_cpus=250_000_000, pids=16)
CID = "ab" * 32


# --------------------------------------------------------------------------- fake trees

def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


NET_DEV = """Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets
    lo:    5000      10    0    0    0     0          0         0     5000      10 0 0 0 0 0 0
  eth0:    1200       9    0    0    0     0          0         0      300       3 0 0 0 0 0 0
  eth1:      34       1    0    0    0     0          0         0       66       1 0 0 0 0 0 0
"""


def fake_v2(root: Path, cgroup: str, procs: str = "42\n") -> Path:
    write(root / "cgroup.controllers", "cpu io memory pids\n")
    base = root / cgroup
    write(base / "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    write(base / "memory.current", "10485760\n")
    write(base / "memory.stat", "anon 6291456\nfile 4194304\ninactive_file 4194304\n")
    write(base / "io.stat", "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"
                            "253:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n")
    write(base / "cgroup.procs", procs)
    return base


def fake_v1(root: Path, cgroup: str, cpu_dir: str = "cpuacct") -> None:
    write(root / cpu_dir / cgroup / "cpuacct.usage", "123456789\n")
    write(root / cpu_dir / cgroup / "cgroup.procs", "42\n43\n")
    write(root / "memory" / cgroup / "memory.usage_in_bytes", "8388608\n")
    write(root / "memory" / cgroup / "memory.stat",
          "cache 3145728\ninactive_file 1\ntotal_cache 3145728\ntotal_inactive_file 2097152\n")
    write(root / "blkio" / cgroup / "blkio.throttle.io_service_bytes_recursive",
          "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 12288\n254:0 Async 0\n"
          "254:0 Total 12288\n7:0 Read 1\n7:0 Write 2\nTotal 12291\n")


@pytest.fixture
def fake_proc(tmp_path) -> Path:
    proc = tmp_path / "proc"
    write(proc / "42" / "net" / "dev", NET_DEV)
    return proc


def sample_one(root: Path, proc: Path) -> Sample:
    labels = {runtime.LABEL_SERVICE: "42", runtime.LABEL_INSTITUTION: "MSPLS",
              runtime.LABEL_KIND: "website"}
    samples = metering.sample_targets([Target(CID, "web-42", labels)], root=root,
                                      proc_root=proc)
    assert len(samples) == 1
    return samples[0]


@pytest.mark.parametrize("cgroup", [f"system.slice/docker-{CID}.scope", f"docker/{CID}"])
def test_cgroup_v2_layouts(tmp_path, fake_proc, cgroup):
    root = tmp_path / "cgroup"
    fake_v2(root, cgroup)
    assert metering.cgroup_version(root) == 2
    assert metering.cgroup_dirs(CID, root).memory == root / cgroup
    sample = sample_one(root, fake_proc)
    assert (sample.cpu_ns, sample.memory_bytes) == (1_500_000, 6 * 1024 * 1024)
    assert (sample.blk_read, sample.blk_write) == (101, 202)
    assert (sample.net_rx, sample.net_tx) == (1234, 366)  # loopback left out
    assert (sample.service_id, sample.institution, sample.kind) == (42, "MSPLS", "website")
    assert (sample.disk_used, sample.disk_size) == (None, None)


@pytest.mark.parametrize("cpu_dir,cgroup", [
    ("cpuacct", f"docker/{CID}"),
    ("cpu,cpuacct", f"docker/{CID}"),
    ("cpu,cpuacct", f"system.slice/docker-{CID}.scope"),
])
def test_cgroup_v1_layouts(tmp_path, fake_proc, cpu_dir, cgroup):
    root = tmp_path / "cgroup"
    fake_v1(root, cgroup, cpu_dir)
    assert metering.cgroup_version(root) == 1
    sample = sample_one(root, fake_proc)
    assert (sample.cpu_ns, sample.memory_bytes) == (123456789, 6 * 1024 * 1024)
    assert (sample.blk_read, sample.blk_write) == (4097, 8194)
    assert (sample.net_rx, sample.net_tx) == (1234, 366)


def test_custom_parent_found_through_proc(tmp_path, fake_proc):
    root = tmp_path / "cgroup"
    fake_v1(root, "tenants/x1", "cpu,cpuacct")
    assert metering.cgroup_dirs(CID, root) is None
    write(fake_proc / "42" / "cgroup",
          "4:memory:/tenants/x1\n3:blkio:/tenants/x1\n2:cpu,cpuacct:/tenants/x1\n0::/\n")
    dirs = metering.cgroup_dirs_from_pid(42, root, fake_proc)
    assert dirs.cpu == root / "cpu,cpuacct" / "tenants/x1"
    assert metering.read_counters(dirs, fake_proc).cpu_ns == 123456789

    root2 = tmp_path / "cgroup2"
    fake_v2(root2, "tenants/x2")
    write(fake_proc / "43" / "cgroup", "0::/tenants/x2\n")
    assert metering.cgroup_dirs_from_pid(43, root2, fake_proc).io == root2 / "tenants/x2"
    assert metering.cgroup_dirs_from_pid(99, root2, fake_proc) is None


def test_exited_processes_and_vanished_files(tmp_path, fake_proc):
    root = tmp_path / "cgroup"
    base = fake_v2(root, f"docker/{CID}", procs="7\n42\n")  # 7 has just exited
    assert sample_one(root, fake_proc).net_rx == 1234
    write(base / "cgroup.procs", "")  # nothing left to read the namespace from
    assert sample_one(root, fake_proc).net_rx is None
    write(base / "memory.current", "1\n")  # inactive cache above usage: keep usage
    assert sample_one(root, fake_proc).memory_bytes == 1
    (base / "memory.current").unlink()  # removed between listing and reading
    assert metering.sample_targets([Target(CID, "gone", {})], root=root,
                                   proc_root=fake_proc) == []


def test_rates_between_samples():
    def at(t: float, cpu: int, rx: int | None) -> Sample:
        return Sample(CID, "x", 1, "I", "website", cpu, 0, rx, 0, 0, 0, None, None, t)

    a, b = at(100.0, 1_000_000_000, 1000), at(102.0, 2_000_000_000, 5000)
    assert metering.cpu_seconds_between(a, b) == 1.0
    assert metering.cpu_percent_between(a, b) == 50.0
    assert metering.rate_between(a, b, "net_rx") == 2000.0
    restarted = at(104.0, 300_000_000, None)
    assert metering.cpu_seconds_between(b, restarted) == 0.3
    assert metering.rate_between(b, restarted, "net_rx") is None


def test_bind_mounts_outside_the_volumes_root_are_not_the_tenants_disk(tmp_path):
    mounts = [{"Type": "bind", "Source": "/", "Destination": "/host"},
              {"Type": "volume", "Name": "plain", "Source": str(tmp_path)}]
    assert metering.volume_usage(mounts, tmp_path / "volumes") == (None, None)


# --------------------------------------------------------------------------- real containers

def docker_disk(client) -> str | None:
    """/dev/<disk> holding Docker's data, to give a container an I/O limit on it."""
    st = os.stat(client.info()["DockerRootDir"])
    sysdir = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if not sysdir.exists():
        return None
    if (sysdir / "partition").exists():
        sysdir = sysdir.resolve().parent
    dev = Path("/dev") / sysdir.resolve().name
    return str(dev) if dev.exists() else None


def quota_volume(root: Path, name: str) -> Path | None:
    """A 16 MiB ext4 file system loop-mounted at root/name.mnt, as provisioners.docker.volumes does."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        return None
    image, mountpoint = root / f"{name}.img", root / f"{name}.mnt"
    mountpoint.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(16 * 1024 * 1024)
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, timeout=60)
        subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True,
                       timeout=60, capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return mountpoint


@pytest.fixture(scope="module")
def fleet(docker_client, docker_prefix, tmp_path_factory):
    """idle, busy (0.25 CPU busy loop) and io (a plain and a quota volume) containers."""
    images.ensure_base_image(docker_client, tmp_path_factory.mktemp("base"))
    net = f"{docker_prefix}-net-metering"
    runtime.ensure_network(docker_client, net,
                           runtime.labels(docker_prefix, "network", extra=TEST_LABELS))
    volumes_root = tmp_path_factory.mktemp("volumes")
    quota_name = f"{docker_prefix}-mtr-quota"
    mountpoint = quota_volume(volumes_root, quota_name)
    data_name = f"{docker_prefix}-mtr-data"
    vol_labels = runtime.labels(docker_prefix, "volume", extra=TEST_LABELS)
    runtime.ensure_volume(docker_client, data_name, vol_labels)
    io_volumes = {data_name: ("/data", "rw")}
    if mountpoint is not None:
        docker_client.volumes.create(quota_name, driver="local", labels=vol_labels, driver_opts={
            "type": "none", "o": "bind", "device": str(mountpoint)})
        io_volumes[quota_name] = ("/quota", "rw")
    commands = {"idle": ["sleep", "infinity"], "busy": ["sh", "-c", "while :; do :; done"],
                "io": ["sleep", "infinity"]}
    disk = docker_disk(docker_client)
    containers = {}
    for index, (role, command) in enumerate(commands.items()):
        spec = ContainerSpec(
            name=f"{docker_prefix}-mtr-{role}", image=BASE_IMAGE, network=net, limits=SMALL,
            labels=runtime.labels(docker_prefix, "metering-test", service_id=9200 + index,
                                  institution="MTR", extra=TEST_LABELS),
            command=command, volumes=io_volumes if role == "io" else {})
        options = runtime.hardened_options(spec)
        if role == "io" and disk:
            # An I/O limit on the disk activates blk-throttle, which v1 needs to count bytes.
            options["device_write_bps"] = [{"Path": disk, "Rate": 1 << 40}]
        container = docker_client.containers.create(**options)
        container.start()
        containers[role] = container
    yield {"containers": containers, "volumes_root": volumes_root if mountpoint else None,
           "network": net, "disk": disk, "quota": quota_name}
    for container in containers.values():
        runtime.remove_container(docker_client, container.name)
    runtime.remove_volume(docker_client, data_name)
    if mountpoint is not None:
        runtime.remove_volume(docker_client, quota_name)
        subprocess.run(["umount", str(mountpoint)], check=False, timeout=60)


def by_role(fleet, samples: list[Sample]) -> dict[str, Sample]:
    ids = {c.id: role for role, c in fleet["containers"].items()}
    return {ids[s.container_id]: s for s in samples if s.container_id in ids}


def sweep_until(client, prefix, predicate, volumes_root=None, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = metering.sweep(client, prefix=prefix, volumes_root=volumes_root)
        if predicate(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


@pytest.mark.docker
def test_sweep_counts_cpu_memory_and_network(docker_client, docker_prefix, fleet):
    first = by_role(fleet, metering.sweep(docker_client, prefix=docker_prefix))
    assert set(first) == {"idle", "busy", "io"}
    for sample in first.values():
        assert sample.memory_bytes > 0 and sample.cpu_ns > 0
        assert sample.net_rx is not None and sample.net_tx is not None
        assert sample.kind == "metering-test" and sample.institution == "MTR"
    assert first["busy"].service_id == 9201

    # Knock on a closed port of idle: the SYN comes in, the RST goes out.
    fleet["containers"]["idle"].reload()
    ip = fleet["containers"]["idle"].attrs["NetworkSettings"]["Networks"][fleet["network"]][
        "IPAddress"]
    for _ in range(3):
        with pytest.raises(OSError):
            socket.create_connection((ip, 9), timeout=2).close()

    def enough(samples):
        now = by_role(fleet, samples)
        return (metering.cpu_seconds_between(first["busy"], now["busy"]) >= 0.2
                and now["idle"].net_tx > first["idle"].net_tx)

    second = by_role(fleet, sweep_until(docker_client, docker_prefix, enough))
    busy = metering.cpu_seconds_between(first["busy"], second["busy"])
    idle = metering.cpu_seconds_between(first["idle"], second["idle"])
    assert busy >= 0.2 and idle < busy / 4
    assert metering.cpu_percent_between(first["busy"], second["busy"]) < 50  # 0.25 CPU cap
    assert second["idle"].net_rx > first["idle"].net_rx
    assert second["idle"].net_tx > first["idle"].net_tx


@pytest.mark.docker
def test_block_io_and_quota_disk(docker_client, docker_prefix, fleet):
    if fleet["disk"] is None and metering.cgroup_version() == 1:
        pytest.skip("no block device found under Docker's data directory")
    root = fleet["volumes_root"]
    before = by_role(fleet, metering.sweep(docker_client, docker_prefix, root))
    io = fleet["containers"]["io"]
    result = io.exec_run(["dd", "if=/dev/zero", "of=/data/blk", "bs=64k", "count=32",
                          "oflag=direct"])
    assert result.exit_code == 0, result.output
    if root is not None:
        result = io.exec_run(["dd", "if=/dev/zero", "of=/quota/f", "bs=64k", "count=32",
                              "conv=fsync"])
        assert result.exit_code == 0, result.output
    after = by_role(fleet, sweep_until(
        docker_client, docker_prefix, volumes_root=root,
        predicate=lambda s: by_role(fleet, s)["io"].blk_write
        >= before["io"].blk_write + 2 * 1024 * 1024))
    assert after["io"].blk_write - before["io"].blk_write >= 2 * 1024 * 1024
    assert after["idle"].blk_write == before["idle"].blk_write
    assert after["idle"].disk_used is None  # no volume at all
    if root is None:
        pytest.skip("no loop-mounted quota volume on this machine")
    assert 8 * 1024 * 1024 < after["io"].disk_size <= 16 * 1024 * 1024
    assert after["io"].disk_used - before["io"].disk_used >= 2 * 1024 * 1024 - 65536
    # Found under the volumes root even where Docker's own mount point is not visible.
    used, size = metering.volume_usage(
        [{"Type": "volume", "Name": fleet["quota"], "Source": "/nonexistent"}], root)
    assert size == after["io"].disk_size and used >= after["io"].disk_used


@pytest.mark.docker
def test_container_vanishing_mid_sweep_is_skipped(docker_client, docker_prefix, fleet):
    spec = ContainerSpec(
        name=f"{docker_prefix}-mtr-doomed", image=BASE_IMAGE, network="none", limits=SMALL,
        labels=runtime.labels(docker_prefix, "metering-test", extra=TEST_LABELS),
        command=["sleep", "infinity"])
    doomed = runtime.ensure_container(docker_client, spec)
    targets = metering.list_targets(docker_client, docker_prefix)
    assert doomed.id in {t.container_id for t in targets}
    runtime.remove_container(docker_client, spec.name)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(spec.name)
    samples = metering.sample_targets(targets, client=docker_client)
    ids = {s.container_id for s in samples}
    assert doomed.id not in ids
    assert fleet["containers"]["idle"].id in ids
