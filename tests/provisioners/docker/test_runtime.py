"""The hardened container profile and the convergent Docker primitives, on a real engine."""
from __future__ import annotations

import time

import docker.errors
import pytest

from provisioners.docker import runtime
from provisioners.docker.runtime import ContainerSpec, Limits
from provisioners.images.build import IMAGES_DIR

pytestmark = pytest.mark.docker

TEST_LABELS = {"bi.gov.comgov.test": "1"}
NGINX_IMAGE = "comgov/nginx:bookworm"
BASE_IMAGE = "comgov/base:bookworm"
NGINX_DIR = IMAGES_DIR / "nginx"
LIMITS = Limits(memory_bytes=64 * 1024 * 1024, nano_cpus=250_000_000, pids=32)
TMPFS = {"/tmp": "rw,noexec,nosuid,size=8m", "/run": "rw,noexec,nosuid,size=1m"}


@pytest.fixture(scope="session")
def nginx_image(docker_client) -> str:
    """The site/proxy image; built here only when the image builder has not made it yet."""
    try:
        docker_client.images.get(NGINX_IMAGE)
    except docker.errors.ImageNotFound:
        docker_client.images.build(path=str(NGINX_DIR), tag=NGINX_IMAGE, rm=True)
    return NGINX_IMAGE


@pytest.fixture
def net(docker_client, docker_prefix) -> str:
    name = f"{docker_prefix}-net-rt"
    runtime.ensure_network(docker_client, name, runtime.labels(docker_prefix, "network",
                                                               extra=TEST_LABELS))
    return name


def make_spec(prefix: str, name: str, image: str, network: str, **overrides) -> ContainerSpec:
    fields = dict(
        name=f"{prefix}-{name}",
        image=image,
        network=network,
        limits=LIMITS,
        labels=runtime.labels(prefix, "website", service_id=1, institution="TEST",
                              extra=TEST_LABELS),
        tmpfs=TMPFS,
        user="33:33",
    )
    fields.update(overrides)
    return ContainerSpec(**fields)


def named(client, name: str) -> list:
    return [c for c in client.containers.list(all=True, filters={"name": name})
            if c.name == name]


def test_labels_core_keys_win_over_extra():
    result = runtime.labels("cpt0", "website", service_id=7, institution="MSPLS",
                            extra={runtime.LABEL_KIND: "forged", "x": "y"})
    assert result == {
        runtime.LABEL_MANAGED: "1", runtime.LABEL_PREFIX: "cpt0", runtime.LABEL_KIND: "website",
        runtime.LABEL_SERVICE: "7", runtime.LABEL_INSTITUTION: "MSPLS", "x": "y",
    }


def test_hardened_options_and_spec_hash():
    spec = make_spec("cpt0", "a", NGINX_IMAGE, "cpt0-net-1",
                     volumes={"v": ("/srv/site", "ro")}, ports={"8080/tcp": ("127.0.0.1", 1)})
    options = runtime.hardened_options(spec)
    assert options["cap_drop"] == ["ALL"] and "cap_add" not in options
    assert options["security_opt"] == ["no-new-privileges:true"]
    assert options["read_only"] is True
    assert options["mem_limit"] == options["memswap_limit"] == LIMITS.memory_bytes
    assert options["volumes"] == {"v": {"bind": "/srv/site", "mode": "ro"}}
    assert options["restart_policy"] == {"Name": "unless-stopped"}
    assert options["network"] == "cpt0-net-1"
    assert options["labels"][runtime.LABEL_SPEC_HASH] == runtime.spec_hash(spec)
    assert runtime.spec_hash(spec) == runtime.spec_hash(make_spec(
        "cpt0", "a", NGINX_IMAGE, "cpt0-net-1",
        volumes={"v": ("/srv/site", "ro")}, ports={"8080/tcp": ("127.0.0.1", 1)}))
    bigger = make_spec("cpt0", "a", NGINX_IMAGE, "cpt0-net-1",
                       limits=Limits(LIMITS.memory_bytes * 2, LIMITS.nano_cpus, LIMITS.pids))
    assert runtime.spec_hash(bigger) != runtime.spec_hash(spec)
    assert runtime.hardened_options(make_spec("cpt0", "b", BASE_IMAGE, "none"))[
        "network_mode"] == "none"
    with pytest.raises(ValueError):
        runtime.hardened_options(make_spec("cpt0", "c", BASE_IMAGE, "host"))
    with pytest.raises(ValueError):
        runtime.hardened_options(make_spec("cpt0", "d", BASE_IMAGE, "none",
                                           volumes={"v": ("/x", "rwx")}))


def test_inspected_container_is_hardened(docker_client, docker_prefix, nginx_image, net):
    spec = make_spec(docker_prefix, "hard", nginx_image, net)
    container = runtime.ensure_container(docker_client, spec)
    host = docker_client.api.inspect_container(container.id)["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == host["MemorySwap"] == LIMITS.memory_bytes
    assert host["NanoCpus"] == LIMITS.nano_cpus
    assert host["PidsLimit"] == LIMITS.pids
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["LogConfig"] == {"Type": "json-file",
                                 "Config": {"max-size": "10m", "max-file": "3"}}
    assert set(host["Tmpfs"]) == {"/tmp", "/run"}
    assert host["IpcMode"] == "private"
    assert host["Privileged"] is False
    assert container.attrs["Config"]["User"] == "33:33"
    labels = container.labels
    assert labels[runtime.LABEL_MANAGED] == "1"
    assert labels[runtime.LABEL_PREFIX] == docker_prefix
    assert labels[runtime.LABEL_KIND] == "website"
    assert labels[runtime.LABEL_SPEC_HASH] == runtime.spec_hash(spec)
    assert labels["bi.gov.comgov.test"] == "1"
    assert list(container.attrs["NetworkSettings"]["Networks"]) == [net]
    assert container.status == "running"


def test_processes_have_no_capability_and_cannot_write_root(docker_client, docker_prefix):
    script = ("grep CapEff /proc/self/status; id -u; "
              "touch /etc/probe 2>&1 || true; echo probe-done; sleep 300")
    spec = make_spec(docker_prefix, "probe", BASE_IMAGE, "none", command=["sh", "-c", script])
    container = runtime.ensure_container(docker_client, spec)
    deadline = time.monotonic() + 10
    output = ""
    while "probe-done" not in output and time.monotonic() < deadline:
        time.sleep(0.1)
        output = container.logs().decode()
    assert "CapEff:\t0000000000000000" in output
    assert "\n33\n" in output
    assert "Read-only file system" in output
    runtime.remove_container(docker_client, spec.name)


def test_ensure_container_is_convergent(docker_client, docker_prefix, nginx_image, net):
    spec = make_spec(docker_prefix, "twice", nginx_image, net)
    first = runtime.ensure_container(docker_client, spec)
    second = runtime.ensure_container(docker_client, spec)
    assert first.id == second.id
    assert len(named(docker_client, spec.name)) == 1


def test_spec_change_recreates(docker_client, docker_prefix, nginx_image, net):
    spec = make_spec(docker_prefix, "drift", nginx_image, net)
    first = runtime.ensure_container(docker_client, spec)
    changed = make_spec(docker_prefix, "drift", nginx_image, net,
                        limits=Limits(LIMITS.memory_bytes * 2, LIMITS.nano_cpus, LIMITS.pids))
    second = runtime.ensure_container(docker_client, changed)
    assert second.id != first.id
    assert second.status == "running"
    assert docker_client.api.inspect_container(second.id)["HostConfig"]["Memory"] == (
        LIMITS.memory_bytes * 2)
    assert [c.id for c in named(docker_client, spec.name)] == [second.id]


def test_start_false_and_stop_start(docker_client, docker_prefix, nginx_image, net):
    spec = make_spec(docker_prefix, "lazy", nginx_image, net)
    container = runtime.ensure_container(docker_client, spec, start=False)
    assert container.status == "created"
    runtime.start_container(docker_client, spec.name)
    assert docker_client.containers.get(spec.name).status == "running"
    runtime.stop_container(docker_client, spec.name)
    assert docker_client.containers.get(spec.name).status == "exited"
    assert runtime.ensure_container(docker_client, spec).status == "running"


def test_unmanaged_container_is_not_replaced(docker_client, docker_prefix, nginx_image, net):
    name = f"{docker_prefix}-foreign"
    foreign = docker_client.containers.create(
        nginx_image, name=name, labels={runtime.LABEL_PREFIX: docker_prefix, **TEST_LABELS})
    with pytest.raises(RuntimeError):
        runtime.ensure_container(docker_client, make_spec(docker_prefix, "foreign",
                                                          nginx_image, net))
    assert docker_client.containers.get(name).id == foreign.id


def test_network_and_volume_are_convergent(docker_client, docker_prefix):
    obj_labels = runtime.labels(docker_prefix, "network", institution="TEST", extra=TEST_LABELS)
    name = f"{docker_prefix}-net-conv"
    first = runtime.ensure_network(docker_client, name, obj_labels)
    second = runtime.ensure_network(docker_client, name, obj_labels)
    assert first.id == second.id
    assert len(docker_client.networks.list(names=[name])) == 1
    attrs = docker_client.api.inspect_network(first.id)
    assert attrs["Driver"] == "bridge" and attrs["Internal"] is False
    assert attrs["Labels"][runtime.LABEL_MANAGED] == "1"
    volume = f"{docker_prefix}-vol-conv"
    assert (runtime.ensure_volume(docker_client, volume, obj_labels).name
            == runtime.ensure_volume(docker_client, volume, obj_labels).name)
    assert docker_client.volumes.get(volume).attrs["Labels"][runtime.LABEL_PREFIX] == docker_prefix
    runtime.remove_volume(docker_client, volume)
    runtime.remove_network(docker_client, name)
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(name)


def test_removing_missing_objects_succeeds(docker_client, docker_prefix):
    runtime.remove_container(docker_client, f"{docker_prefix}-nothing")
    runtime.remove_volume(docker_client, f"{docker_prefix}-nothing")
    runtime.remove_network(docker_client, f"{docker_prefix}-nothing")
    runtime.stop_container(docker_client, f"{docker_prefix}-nothing")


def test_list_containers_filters_by_prefix_and_kind(docker_client, docker_prefix, nginx_image,
                                                    net):
    spec = make_spec(docker_prefix, "listed", nginx_image, net)
    runtime.ensure_container(docker_client, spec, start=False)
    names = {c.name for c in runtime.list_containers(docker_client, docker_prefix, "website")}
    assert spec.name in names
    assert not runtime.list_containers(docker_client, docker_prefix, "no-such-kind")
