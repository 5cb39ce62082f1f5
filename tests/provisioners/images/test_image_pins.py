"""Platform images are pinned: a tag found on the engine is checked (labels, one layer for the
base, the recorded id) before it is reused, containers name the recorded id or the registry
digest, and the push to the registry's comgov/ namespace records the digest the registry
serves. Against the real engine and registry, with small throwaway images: the real
comgov/* tags are never moved."""
from __future__ import annotations

import io
import logging
import secrets
import tarfile
from pathlib import Path

import docker.errors
import pytest

from provisioners.images import build, pins
from provisioners.registry import signing
from provisioners.registry.api import RegistryClient

pytestmark = pytest.mark.docker


# --------------------------------------------------------------------------- helpers

def _context(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def build_foreign(client, tag: str, dockerfile: str, payload: bytes | None = None) -> str:
    """An image the platform did not build (as a hostile archive or a stray build would make)."""
    files = {"Dockerfile": dockerfile.encode(), "payload": payload or secrets.token_bytes(32)}
    image, _ = client.images.build(fileobj=_context(files), custom_context=True, tag=tag,
                                   rm=True, pull=False)
    return image.id


def retag(client, image_id: str, tag: str) -> None:
    repository, _, version = tag.rpartition(":")
    assert client.api.tag(image_id, repository, version, force=True)


def untag(client, *refs: str) -> None:
    for ref in refs:
        try:
            client.images.remove(ref)
        except docker.errors.APIError:
            pass


def image_folder(path: Path) -> Path:
    """A platform-like image folder: tiny (FROM scratch, one small file)."""
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text('FROM scratch\nCOPY payload /payload\nCMD ["/payload"]\n')
    (path / "payload").write_bytes(secrets.token_bytes(64))
    return path


@pytest.fixture
def throwaway(docker_client, tmp_path):
    """A name, tag and folder of a small platform-like image; every tag made is removed."""
    name = f"test-pin-{secrets.token_hex(4)}"
    made: list[str] = []
    yield {"name": name, "tag": f"comgov/{name}:bookworm", "dir": image_folder(tmp_path / name),
           "made": made}
    untag(docker_client, *reversed(made), f"comgov/{name}:bookworm")


# --------------------------------------------------------------------------- the base image

def test_the_base_image_carries_its_labels_and_is_reused(docker_client, tmp_path):
    image_id = build.ensure_base_image(docker_client, tmp_path / "base",
                                       record=tmp_path / "images.json")
    image = docker_client.images.get(build.BASE_IMAGE)
    assert image.id == image_id
    assert image.labels[pins.IMAGE_LABEL] == "base"
    assert image.labels[pins.HASH_LABEL] == build.base_hash()
    assert pins.base_problem(image, build.base_hash(), build.BASE_CMD) is None
    record = pins.Record.load(tmp_path / "images.json")
    assert record.get(build.BASE_IMAGE).id == image_id


def test_a_foreign_image_under_the_base_tag_is_rebuilt_not_reused(docker_client, tmp_path,
                                                                  monkeypatch, caplog):
    """Under a throwaway base tag (a real rebuild is debootstrap: the builder is replaced by
    one that puts the real base back, as a rebuild would)."""
    real = build.ensure_base_image(docker_client, tmp_path / "base")
    tag = f"comgov-test/base-{secrets.token_hex(4)}:bookworm"
    rebuilds: list[str] = []

    def rebuild(client, workdir, wanted_tag, content_hash):
        assert content_hash == build.base_hash()
        rebuilds.append(wanted_tag)
        retag(client, real, wanted_tag)
        return real

    monkeypatch.setattr(build, "_debootstrap_import", rebuild)
    record = pins.Record(tmp_path / "images.json")
    foreign = []
    try:
        retag(docker_client, real, tag)
        assert build.ensure_base_image(docker_client, tmp_path, tag=tag, record=record) == real
        assert rebuilds == [] and record.get(tag).id == real

        cases = [
            # no labels at all (docker tag of a tiny image built from scratch)
            ("FROM scratch\nCOPY payload /payload\n", "label"),
            # built FROM the real base: inherits its labels, but has a second layer
            (f"FROM {build.BASE_IMAGE}\nCOPY payload /payload\n", "layers"),
            # one layer and the base's labels and command, forged: only the record tells
            ("FROM scratch\nCOPY payload /payload\n"
             f"LABEL {pins.IMAGE_LABEL}=base {pins.HASH_LABEL}={build.base_hash()}\n"
             'CMD ["/bin/bash"]\n', "recorded"),
        ]
        for dockerfile, reason in cases:
            caplog.clear()
            foreign_tag = f"comgov-test/foreign-{secrets.token_hex(4)}:1"
            foreign.append(foreign_tag)
            foreign_id = build_foreign(docker_client, foreign_tag, dockerfile)
            retag(docker_client, foreign_id, tag)
            with caplog.at_level(logging.WARNING, logger=build.log.name):
                assert build.ensure_base_image(docker_client, tmp_path, tag=tag,
                                               record=record) == real
            assert rebuilds[-1] == tag, reason
            assert docker_client.images.get(tag).id == real
            assert "event=image.untrusted" in caplog.text and reason in caplog.text
        assert len(rebuilds) == len(cases)
        # without a record, the forged one-layer image would pass the label checks: the
        # record (written by every build step of `make run`) is what pins the base
        image = docker_client.images.get(foreign[-1])
        assert pins.base_problem(image, build.base_hash(), build.BASE_CMD) is None
    finally:
        untag(docker_client, tag, *foreign)
    assert docker_client.images.get(build.BASE_IMAGE).id == real  # never moved


# --------------------------------------------------------------------------- other images

def test_a_foreign_image_under_an_image_tag_is_rebuilt(docker_client, throwaway, tmp_path,
                                                      caplog):
    name, tag, folder = throwaway["name"], throwaway["tag"], throwaway["dir"]
    record = pins.Record(tmp_path / "images.json")
    built = build.ensure_image(docker_client, name, directory=folder, tag=tag, record=record)
    image = docker_client.images.get(tag)
    assert image.labels[pins.IMAGE_LABEL] == name
    assert image.labels[pins.HASH_LABEL] == build.context_hash(docker_client, folder)
    assert record.get(tag).id == built
    assert pins.Record.load(tmp_path / "images.json").get(tag).id == built
    # unchanged: reused
    assert build.ensure_image(docker_client, name, directory=folder, tag=tag,
                              record=record) == built

    wanted = build.context_hash(docker_client, folder)
    cases = [
        ("FROM scratch\nCOPY payload /payload\n", "label"),
        # the platform's labels copied onto another image: only the recorded id tells
        ("FROM scratch\nCOPY payload /payload\n"
         f"LABEL {pins.IMAGE_LABEL}={name} {pins.HASH_LABEL}={wanted}\n", "recorded"),
    ]
    for dockerfile, reason in cases:
        caplog.clear()
        foreign_tag = f"comgov-test/foreign-{secrets.token_hex(4)}:1"
        throwaway["made"].append(foreign_tag)
        foreign_id = build_foreign(docker_client, foreign_tag, dockerfile)
        retag(docker_client, foreign_id, tag)
        with caplog.at_level(logging.WARNING, logger=build.log.name):
            again = build.ensure_image(docker_client, name, directory=folder, tag=tag,
                                       record=record)
        assert again == built, reason  # rebuilt (the build cache gives the same image back)
        assert docker_client.images.get(tag).id == built
        assert "event=image.untrusted" in caplog.text and reason in caplog.text


def test_changed_inputs_rebuild_and_the_record_follows(docker_client, throwaway, tmp_path):
    name, tag, folder = throwaway["name"], throwaway["tag"], throwaway["dir"]
    path = tmp_path / "images.json"
    first = build.ensure_image(docker_client, name, directory=folder, tag=tag, record=path)
    record = pins.Record.load(path)
    record.pushed(tag, "127.0.0.1:1", "sha256:" + "a" * 64)
    (folder / "payload").write_bytes(secrets.token_bytes(64))
    second = build.ensure_image(docker_client, name, directory=folder, tag=tag, record=path)
    assert second != first
    pin = pins.Record.load(path).get(tag)
    assert pin.id == second and pin.digest is None and pin.registry is None  # must be pushed
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(first)  # the untagged old image was dropped


# --------------------------------------------------------------------------- the resolver

def test_resolve_names_the_recorded_id_or_the_registry_digest(docker_client, throwaway,
                                                              tmp_path):
    name, tag, folder = throwaway["name"], throwaway["tag"], throwaway["dir"]
    built = build.ensure_image(docker_client, name, directory=folder, tag=tag)
    empty = pins.Record(tmp_path / "none.json")
    # no record (the tests' default): the tag's id once its labels are checked
    assert pins.resolve(docker_client, tag, empty, registry="127.0.0.1:5001") == built
    # a missing image is named as it is: creating the container fails naming it
    assert pins.resolve(docker_client, "comgov/does-not-exist:never", empty) == \
        "comgov/does-not-exist:never"

    record = pins.Record(tmp_path / "images.json")
    record.built(tag, name, built, "h")
    assert pins.resolve(docker_client, tag, record, registry="127.0.0.1:5001") == built
    digest = "sha256:" + "b" * 64
    record.pushed(tag, "127.0.0.1:5001", digest)
    loaded = pins.Record.load(tmp_path / "images.json")
    assert pins.resolve(docker_client, tag, loaded, registry="127.0.0.1:5001") == \
        f"127.0.0.1:5001/comgov/{name}@{digest}"
    assert pins.resolve(docker_client, tag, loaded, registry="other:5000") == built

    # a foreign image moved under the tag afterwards changes nothing for a recorded image...
    foreign_tag = f"comgov-test/foreign-{secrets.token_hex(4)}:1"
    throwaway["made"].append(foreign_tag)
    foreign = build_foreign(docker_client, foreign_tag, "FROM scratch\nCOPY payload /p\n")
    retag(docker_client, foreign, tag)
    assert pins.resolve(docker_client, tag, loaded, registry="") == built
    # ...and is refused when nothing was recorded
    with pytest.raises(pins.UntrustedImage, match="not an image the platform built"):
        pins.resolve(docker_client, tag, empty)
    # a name outside comgov/ is the operator's own: pinned to its id, not checked
    assert pins.resolve(docker_client, foreign_tag, empty) == foreign


def test_an_unreadable_record_is_an_error_not_an_empty_one(tmp_path):
    path = tmp_path / "images.json"
    path.write_text("{not json")
    with pytest.raises(RuntimeError, match="unreadable"):
        pins.Record.load(path)
    path.write_text('{"version": 99, "images": {}}')
    with pytest.raises(RuntimeError, match="unknown format"):
        pins.Record.load(path)
    assert pins.Record.load(tmp_path / "missing.json").pins == {}


# --------------------------------------------------------------------------- the push

@pytest.fixture
def platform_tokens(registry):
    """Tokens as the control plane signs them for the platform's account."""
    signer = signing.Signer.load(signing.material_paths(registry["auth_dir"]))

    def token_for(scopes: str, names=None) -> str:
        access = []
        for scope in scopes.split():
            _kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            if names is None or repo in names:
                access.append({"type": "repository", "name": repo,
                               "actions": actions.split(",")})
        return signer.sign(issuer=registry["issuer"], audience=registry["service"],
                           subject="platform$comgov", access=access, ttl=120).text
    return token_for


def test_push_records_the_digest_the_registry_serves(docker_client, registry, throwaway,
                                                      tmp_path, platform_tokens, docker_prefix):
    name, tag, folder = throwaway["name"], throwaway["tag"], throwaway["dir"]
    address, repository = registry["address"], f"comgov/{name}"
    throwaway["made"].append(f"{address}/{repository}:bookworm")
    path = tmp_path / "images.json"
    built = build.ensure_image(docker_client, name, directory=folder, tag=tag, record=path)
    record = pins.Record.load(path)

    # a token without push on this repository: the registry refuses, nothing is recorded
    with RegistryClient(registry["url"], platform_tokens) as api:
        with pytest.raises(RuntimeError, match="denied"):
            pins.push_images(docker_client, record, address, api,
                             lambda scopes: platform_tokens(scopes, names=("comgov/base",)))
    assert pins.Record.load(path).get(tag).digest is None

    with RegistryClient(registry["url"], platform_tokens) as api:
        pinned = pins.push_images(docker_client, record, address, api, platform_tokens)
        served = api.manifest(repository, "bookworm").digest
    pin = pins.Record.load(path).get(tag)
    assert pin.id == built and pin.registry == address and pin.digest == served
    assert pinned == {tag: f"{address}/{repository}@{served}"}
    # the engine knows the image by that digest: a container is created without a pull
    assert docker_client.images.get(pinned[tag]).id == built
    assert pins.resolve(docker_client, tag, pins.Record.load(path), registry=address) == \
        pinned[tag]
    container = docker_client.containers.create(
        pinned[tag], name=f"{docker_prefix}-pin-{secrets.token_hex(3)}", network_mode="none",
        labels={"bi.gov.comgov.prefix": docker_prefix})
    try:
        assert container.attrs["Image"] == built
        assert container.attrs["Config"]["Image"] == pinned[tag]
    finally:
        container.remove(force=True)

    # pushing again is harmless: same digest (the registry has every layer)
    with RegistryClient(registry["url"], platform_tokens) as api:
        assert pins.push_images(docker_client, pins.Record.load(path), address, api,
                                platform_tokens) == pinned
