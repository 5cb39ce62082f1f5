"""Applications run as a tenant, not as root; image VOLUMEs are tmpfs; image files are bounded.

Against the real engine, with tiny images built from the platform's base image.
"""
from __future__ import annotations

import hashlib
import io
import tarfile

import docker.errors
import pytest
from docker.models.containers import Container

from provisioners.application import container as application
from provisioners.docker import volumes
from tests.provisioners.application.test_application_provisioner import (  # noqa: F401
    APP_PORT,
    SERVER_PL,
    app_image,
    make_app,
    nginx_image,
    proxy,
)

IMAGE_HASH_LABEL = "bi.gov.comgov.test-image-hash"
PLATFORM_USER = f"{application.APP_UID}:{application.APP_GID}"
SERVE = 'EXPOSE 9000\nCMD ["perl", "/opt/app/server.pl"]\n'
IMAGES = {
    # USER root, said in words.
    "root": "USER root\n",
    # No USER at all: Docker's default is root.
    "unset": "",
    # A name that /etc/passwd maps to uid 0, with /etc/passwd behind a symbolic link.
    "boss": "RUN mv /etc/passwd /etc/passwd.real && ln -s passwd.real /etc/passwd"
            " && echo 'boss:x:0:0:boss:/root:/bin/sh' >> /etc/passwd.real\nUSER boss\n",
    # Numeric uid 0 with a group.
    "zero": "USER 0:65534\n",
    # Declared volumes: /data (the service's volume_path below) and two others.
    "volumes": "RUN install -d /data /var/cache/app\nVOLUME /data\nVOLUME /var/cache/app/\n"
               "VOLUME /srv/spool\n",
    # A 3 MiB /etc/passwd: refused without being read.
    "bigpasswd": "RUN head -c 3145728 /dev/zero | tr '\\0' '#' >> /etc/passwd\nUSER nobody\n",
}


def build(client, name: str, body: str) -> str:
    """comgov-test/confine-<name>:1 from the base image, rebuilt only when its text changes."""
    ref = f"comgov-test/confine-{name}:1"
    dockerfile = f"FROM comgov/base:bookworm\nCOPY server.pl /opt/app/server.pl\n{body}{SERVE}"
    digest = hashlib.sha256((dockerfile + SERVER_PL).encode()).hexdigest()
    try:
        if client.images.get(ref).labels.get(IMAGE_HASH_LABEL) == digest:
            return ref
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member, text in (("Dockerfile", dockerfile), ("server.pl", SERVER_PL)):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=ref, rm=True,
                        labels={IMAGE_HASH_LABEL: digest})
    return ref


@pytest.fixture(scope="module")
def images(docker_client) -> dict[str, str]:
    return {name: build(docker_client, name, body) for name, body in IMAGES.items()}


def run(docker_client, app, proxy_spec) -> Container:  # noqa: F811
    application.ensure_application(docker_client, app, proxy_spec, wait_timeout=30)
    return docker_client.containers.get(application.container_name(app))


def uid_gid(container: Container) -> tuple[str, str]:
    result = container.exec_run(["sh", "-c", "echo $(id -u):$(id -g)"])
    assert result.exit_code == 0, result.output
    return result.output.decode().strip().split(":")


@pytest.mark.docker
@pytest.mark.parametrize("name", ["root", "unset", "boss", "zero"])
def test_root_images_run_as_the_platform_user(docker_client, docker_prefix, proxy, images,  # noqa: F811
                                              name):
    app = make_app(docker_prefix, 60, f"{name}.minisante.gov.bi", image=images[name],
                   volume_path=None)
    try:
        container = run(docker_client, app, proxy)
        assert container.attrs["Config"]["User"] == PLATFORM_USER
        assert uid_gid(container) == [str(application.APP_UID), str(application.APP_GID)]
        # The health check (perl, through the container's user) passes as well.
        assert container.attrs["State"]["Health"]["Status"] == "healthy"
    finally:
        application.remove_application(docker_client, app, proxy)


@pytest.mark.docker
def test_an_image_allowed_by_the_catalogue_keeps_root(docker_client, docker_prefix, proxy,  # noqa: F811
                                                      images):
    app = make_app(docker_prefix, 61, "legacy.minisante.gov.bi", image=images["root"],
                   volume_path=None, allow_root=True)
    try:
        container = run(docker_client, app, proxy)
        assert container.attrs["Config"]["User"] == "root"
        assert uid_gid(container) == ["0", "0"]
        assert container.attrs["HostConfig"]["CapDrop"] == ["ALL"]  # root, but no capability
    finally:
        application.remove_application(docker_client, app, proxy)


@pytest.mark.docker
def test_a_non_root_user_of_the_image_is_kept(docker_client, docker_prefix, proxy, app_image):  # noqa: F811
    app = make_app(docker_prefix, 62, "kept.minisante.gov.bi", volume_path=None)
    try:
        container = run(docker_client, app, proxy)
        assert container.attrs["Config"]["User"] == "65534:65534"  # the image's USER
        assert uid_gid(container) == ["65534", "65534"]
    finally:
        application.remove_application(docker_client, app, proxy)


@pytest.mark.docker
def test_root_image_writes_to_its_quota_volume(docker_client, docker_prefix, proxy, images,  # noqa: F811
                                               tmp_path):
    root = tmp_path / "volumes"
    app = make_app(docker_prefix, 63, "quota-root.minisante.gov.bi", image=images["root"],
                   disk_bytes=volumes.MIN_SIZE, volumes_root=str(root))
    try:
        container = run(docker_client, app, proxy)
        wrote = container.exec_run(["sh", "-c", "echo x > /data/f && stat -c %u:%g /data/f"])
        assert (wrote.exit_code, wrote.output.decode().strip()) == (0, PLATFORM_USER)
        assert docker_client.volumes.get(application.volume_name(app)).attrs["Options"][
            "device"] == str(root.resolve() / f"{application.volume_name(app)}.mnt")
    finally:
        application.remove_application(docker_client, app, proxy)


@pytest.mark.docker
def test_declared_volumes_are_tmpfs_never_anonymous_volumes(docker_client, docker_prefix,
                                                            proxy, images):  # noqa: F811
    app = make_app(docker_prefix, 64, "volumes.minisante.gov.bi", image=images["volumes"])
    before = {v.name for v in docker_client.volumes.list()}
    try:
        container = run(docker_client, app, proxy)
        # Only the service's own volume at volume_path: Docker created no anonymous volume.
        assert [(m["Type"], m["Name"], m["Destination"]) for m in container.attrs["Mounts"]] \
            == [("volume", application.volume_name(app), "/data")]
        new = {v.name for v in docker_client.volumes.list()} - before
        used = {v for v in new
                if docker_client.containers.list(all=True, filters={"volume": v,
                                                                    "id": container.id})}
        assert used == {application.volume_name(app)}
        tmpfs = container.attrs["HostConfig"]["Tmpfs"]
        assert set(tmpfs) == {"/tmp", "/run", "/var/cache/app", "/srv/spool"}
        assert tmpfs["/srv/spool"] == application.declared_volume_tmpfs(
            (application.APP_UID, application.APP_GID))
        mounts = container.exec_run(["cat", "/proc/mounts"]).output.decode()
        spool = next(line for line in mounts.splitlines() if " /srv/spool " in line)
        assert spool.startswith("tmpfs ") and "size=65536k" in spool and "noexec" in spool
        wrote = container.exec_run(["sh", "-c", "touch /var/cache/app/x /srv/spool/y /data/z"
                                                " && stat -c %u:%g /srv/spool"])
        assert (wrote.exit_code, wrote.output.decode().strip()) == (0, PLATFORM_USER)
    finally:
        application.remove_application(docker_client, app, proxy)
    assert not used & {v.name for v in docker_client.volumes.list()}  # removed with the app


@pytest.mark.docker
def test_an_oversized_passwd_is_refused_without_being_read(docker_client, docker_prefix,
                                                           proxy, images, monkeypatch):  # noqa: F811
    read = []
    original = Container.get_archive

    def counting(self, path, *args, **kwargs):
        stream, stat = original(self, path, *args, **kwargs)

        def counted():
            for chunk in stream:
                read.append(len(chunk))
                yield chunk
        return counted(), stat

    monkeypatch.setattr(Container, "get_archive", counting)
    app = make_app(docker_prefix, 65, "big.minisante.gov.bi", image=images["bigpasswd"],
                   institution_id=8)
    with pytest.raises(ValueError, match=r"/etc/passwd in image .* is 31\d{5} bytes: the "
                                         r"platform reads at most 1048576 bytes"):
        application.ensure_application(docker_client, app, proxy, wait_timeout=30)
    assert sum(read) == 0  # refused on its size, before its content
    assert not docker_client.networks.list(names=[application.network_name(docker_prefix, 8)])
    assert not docker_client.containers.list(
        all=True, filters={"name": application.container_name(app)})  # nor the inspector


@pytest.mark.docker
def test_reading_an_image_file_stops_at_the_limit(docker_client, images, monkeypatch):
    """The stream itself is bounded too, whatever the size Docker announces."""
    container = docker_client.containers.create(images["bigpasswd"], command=["true"],
                                                network_mode="none")
    read = []
    original = Container.get_archive

    def understated(self, path, *args, **kwargs):
        stream, stat = original(self, path, *args, **kwargs)

        def counted():
            for chunk in stream:
                read.append(len(chunk))
                yield chunk
        return counted(), {**stat, "size": 10}  # as if the file were small

    monkeypatch.setattr(Container, "get_archive", understated)
    try:
        with pytest.raises(ValueError, match="larger than 1114112 bytes: the platform stopped"):
            application.read_image_file(container, "/etc/passwd", images["bigpasswd"])
        assert sum(read) <= application.MAX_IMAGE_FILE_BYTES + 2 * 64 * 1024
        assert application.read_image_file(container, "/etc/hostname-missing", "x") == ""
        with pytest.raises(ValueError, match="/etc in image x is not a regular file"):
            application.read_image_file(container, "/etc", "x")
    finally:
        container.remove(force=True)


def test_read_bounded_closes_an_endless_stream():
    closed = []

    def endless():
        try:
            while True:
                yield b"x" * 1000
        finally:
            closed.append(True)

    with pytest.raises(ValueError, match="the platform stopped reading it"):
        application.read_bounded(endless(), 10_000, "/etc/passwd in image x")
    assert closed == [True]
    assert application.read_bounded(iter([b"ab", b"c"]), 3, "f") == b"abc"


@pytest.mark.parametrize("declared, volume_path, expected", [
    (None, None, ()),
    ({"/data": {}}, "/data", ()),
    ({"/data/": {}, "/var//lib/x": {}}, None, ("/data", "/var/lib/x")),
    ({"/tmp": {}, "/run": {}, "/data/cache": {}}, "/data", ("/data/cache",)),
    ({"//srv/../srv/a": {}}, None, ("/srv/a",)),
])
def test_declared_volumes(declared, volume_path, expected):
    assert application.declared_volumes(declared, volume_path) == expected


@pytest.mark.parametrize("declared, message", [
    ({"data": {}}, "not an absolute path"),
    ({"/": {}}, "hide the whole image"),
    ({"/a/..": {}}, "hide the whole image"),
])
def test_declared_volumes_refused(declared, message):
    with pytest.raises(ValueError, match=message):
        application.declared_volumes(declared, None)


def test_spec_without_confinement_keeps_the_given_user():
    app = make_app("cptx", 1, user="nobody")
    assert application.application_container_spec(app).user == "nobody"
    confined = application.application_container_spec(
        app, application.Confinement(user=PLATFORM_USER, owner=(10001, 10001),
                                     image_volumes=("/srv/spool",)))
    assert confined.user == PLATFORM_USER
    assert confined.tmpfs["/srv/spool"].endswith(",uid=10001,gid=10001")
    assert confined.tmpfs["/tmp"] == application.TMPFS["/tmp"]
