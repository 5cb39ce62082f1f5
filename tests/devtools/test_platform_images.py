"""`make run`'s image steps with a temporary instance folder (make run itself is not started):
the build step keeps instance/images.json, the push step sends the recorded images to the
registry's comgov/ namespace with the platform's account and records the digests, and the
control plane's specs then name the images by digest. The push happens after the registry
starts and before any platform container is (re)created."""
from __future__ import annotations

import secrets
import subprocess

import docker.errors
import pytest

from controlplane.core import infra
from controlplane.proxy.front import proxy_spec
from devtools import devstack, platform
from provisioners.images import build, pins
from provisioners.registry.api import RegistryClient

pytestmark = pytest.mark.docker


@pytest.fixture
def instance(tmp_path, registry, docker_prefix):
    """An instance folder whose settings.py points at the session's registry."""
    folder = tmp_path / "instance"
    folder.mkdir()
    settings = {**registry["settings"], "SECRET_KEY": secrets.token_urlsafe(16),
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'controlplane.db'}",
                "DOCKER_PREFIX": docker_prefix}
    (folder / "settings.py").write_text("".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    return folder


@pytest.fixture
def small_image(docker_client, tmp_path, registry):
    """A platform-like image of a few bytes (the real ones are 200 MB and more)."""
    name = f"test-pin-{secrets.token_hex(4)}"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "Dockerfile").write_text('FROM scratch\nCOPY payload /payload\nCMD ["/payload"]\n')
    (folder / "payload").write_bytes(secrets.token_bytes(64))
    tag = f"comgov/{name}:bookworm"
    yield {"name": name, "tag": tag, "dir": folder}
    for ref in (f"{registry['address']}/comgov/{name}:bookworm", tag):
        try:
            docker_client.images.remove(ref)
        except docker.errors.APIError:
            pass


def test_build_push_and_specs_by_digest(docker_client, registry, instance, small_image):
    record_path = platform.images_record(instance)
    assert record_path == instance / "images.json"
    # the build step: the real images are verified (rebuilt only if they are not the
    # platform's) and recorded
    platform.build_images(instance)
    record = pins.Record.load(record_path)
    for name in ["base", *build.image_names()]:
        tag = build.image_tag(name)
        assert record.get(tag).id == docker_client.images.get(tag).id
    # plus the small image, as ensure_images records each one
    small = build.ensure_image(docker_client, small_image["name"], directory=small_image["dir"],
                               tag=small_image["tag"], record=record_path)

    pinned = platform.push_images(instance, tags=[small_image["tag"]])

    repository = f"comgov/{small_image['name']}"
    with platform.instance_app(instance) as app:
        token_for = platform.platform_token_source(app)
        with RegistryClient(registry["url"], token_for) as api:
            served = api.manifest(repository, "bookworm").digest
        ref = f"{registry['address']}/{repository}@{served}"
        assert pinned == {small_image["tag"]: ref}
        pin = pins.Record.load(record_path).get(small_image["tag"])
        assert (pin.id, pin.registry, pin.digest) == (small, registry["address"], served)

        # the control plane's specs: by registry digest once pushed...
        app.config["SITE_IMAGE"] = small_image["tag"]
        assert infra.image_ref(small_image["tag"]) == ref
        assert proxy_spec().image == ref
        assert docker_client.images.get(ref).id == small
        # ...by the recorded id when not pushed there (no registry, or another one)
        app.config["SITE_IMAGE"] = build.image_tag("nginx")
        assert proxy_spec().image == record.get(build.image_tag("nginx")).id
        assert proxy_spec().image.startswith("sha256:")
        app.config.update(REGISTRY_ADDRESS="registry.elsewhere:5000",
                          SITE_IMAGE=small_image["tag"])
        assert proxy_spec().image == small


class _Proc:
    pid = 0
    returncode = None

    def poll(self):
        return None


def test_make_run_pushes_after_the_registry_and_before_the_containers(tmp_path, monkeypatch):
    """The order of _start_and_wait's steps, the services replaced by stand-ins."""
    steps: list[str] = []

    def service(name):
        def start(*args, **kwargs):
            steps.append(name)
            return _Proc()
        return start

    class Stop(Exception):
        pass

    def run(args, **kwargs):
        steps.append("run " + " ".join(str(a) for a in args[1:]))
        raise Stop()

    monkeypatch.setattr(devstack, "ensure_dockerd", lambda log_path: None)
    monkeypatch.setattr(devstack, "start_redis", service("redis"))
    monkeypatch.setattr(devstack, "start_slapd", service("slapd"))
    monkeypatch.setattr(devstack, "start_registry", service("registry"))
    monkeypatch.setattr(platform, "build_images", lambda instance: steps.append("build"))
    monkeypatch.setattr(platform, "push_images",
                        lambda instance: steps.append("push") or {})
    monkeypatch.setattr(platform, "_answers", lambda host, port: False)
    monkeypatch.setattr(subprocess, "run", run)
    instance = tmp_path / "instance"
    (instance / "logs").mkdir(parents=True)
    with pytest.raises(Stop):
        platform._start_and_wait(instance, [], platform._Signals(), host="127.0.0.1",
                                 port=devstack.free_port(), workers=1)
    assert steps[:6] == ["build", "redis", "slapd", "registry", "push", "run firewall"]
