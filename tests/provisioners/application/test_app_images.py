"""The image catalogue rule and uploaded `docker save` archives, on a real Docker Engine."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import docker.errors
import pytest

from provisioners.application import image_archives as app_images
from provisioners.application.image_archives import (
    check_image_archive,
    image_allowed,
    load_image_archive,
)

REGISTRY = "registry.dc.gov.bi/"


@pytest.mark.parametrize("ref, expected", [
    ("registry.dc.gov.bi/minisante/dhis2:2.40", True),
    ("registry.dc.gov.bi/app:1", True),
    ("registry.dc.gov.bi/minisante/dhis2", False),            # no tag
    ("registry.dc.gov.bi/minisante/dhis2:latest", False),     # moving tag
    ("registry.dc.gov.bi.evil.example/app:1", False),         # not a path component
    ("registry.dc.gov.biz/app:1", False),
    ("evil.example/registry.dc.gov.bi/app:1", False),
    ("docker.io/library/nginx:1.25", False),
    ("comgov/odoo:17", True),                                 # exact list entry
    ("comgov/odoo:18", False),
    ("comgov/metabase:latest", True),                         # latest only when listed exactly
    ("registry.dc.gov.bi/app@sha256:" + "a" * 64, False),     # digest without tag
    ("registry.dc.gov.bi/App:1", False),                      # uppercase repository
    ("registry.dc.gov.bi/app:1 ", False),
    ("registry.dc.gov.bi/../app:1", False),
    ("", False),
    ("docker.io/library/postgres:16", True),                  # Docker's long form of a listed one
    ("postgres:16", True),
])
def test_image_allowed(ref, expected):
    allowed = ["comgov/odoo:17", "comgov/metabase:latest", "postgres:16"]
    assert image_allowed(ref, [REGISTRY], allowed) is expected


def test_prefix_without_trailing_slash_matches_whole_components():
    assert image_allowed("registry.dc.gov.bi/a/b:1", ["registry.dc.gov.bi/a"], [])
    assert not image_allowed("registry.dc.gov.bi/ab:1", ["registry.dc.gov.bi/a"], [])
    assert not image_allowed("x/y:1", [""], [])


# --- archives --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_images(docker_client, docker_prefix):
    """Two few-byte images FROM scratch (the base image would make 200 MB archives)."""
    refs = []
    for letter in "ab":
        ref = f"{docker_prefix}-src/{letter}:1"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello.txt /hello.txt\n"),
                               ("hello.txt", f"hello {letter} {docker_prefix}\n".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        docker_client.images.build(fileobj=buf, custom_context=True, tag=ref, rm=True)
        refs.append(ref)
    yield refs
    for ref in refs:
        _remove_image(docker_client, ref)


def _remove_image(client, ref: str) -> None:
    try:
        client.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass


def save_as(client, source: str, ref: str | None, path: Path) -> Path:
    """`docker save` of source, named ref (None: saved by id, so without any tag)."""
    image = client.images.get(source)
    if ref is not None:
        image.tag(*ref.rsplit(":", 1))
        image.reload()
    try:
        with open(path, "wb") as out:
            for chunk in image.save(named=ref or False):
                out.write(chunk)
    finally:
        if ref is not None:
            client.images.remove(ref)  # untag: the archive is loaded fresh by the tests
    return path


def rewrite_member(src: Path, dst: Path, name: str, data: bytes) -> Path:
    with tarfile.open(src) as old, tarfile.open(dst, "w") as new:
        for member in old:
            if member.name == name:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                new.addfile(info, io.BytesIO(data))
            else:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
    return dst


def allowed_ref(prefix: str, name: str = "app") -> str:
    return f"{REGISTRY}{prefix}/{name}:1"


def image_exists(client, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


@pytest.mark.docker
def test_check_reads_tags_without_loading(docker_client, docker_prefix, tiny_images, tmp_path):
    ref = allowed_ref(docker_prefix)
    archive = save_as(docker_client, tiny_images[0], ref, tmp_path / "app.tar")
    assert archive.stat().st_size < 64 * 1024
    assert check_image_archive(archive, max_bytes=1 << 20) == [ref]
    assert not image_exists(docker_client, ref)
    with pytest.raises(ValueError, match="limit is 1000"):
        check_image_archive(archive, max_bytes=1000)

    untagged = save_as(docker_client, tiny_images[0], None, tmp_path / "untagged.tar")
    with pytest.raises(ValueError, match="has no tag"):
        check_image_archive(untagged)

    gz = tmp_path / "app.tar.gz"
    gz.write_bytes(gzip.compress(archive.read_bytes()))
    with pytest.raises(ValueError, match="gzip-compressed"):
        check_image_archive(gz)

    # Go's JSON decoder would take "repotags" for RepoTags: a second, disguised tag list.
    manifest = json.loads(tarfile.open(archive).extractfile("manifest.json").read())
    text = json.dumps(manifest)[:-2] + ', "repotags": ["evil/x:1"]}]'
    sneaky = rewrite_member(archive, tmp_path / "sneaky.tar", "manifest.json", text.encode())
    with pytest.raises(ValueError, match="duplicate keys"):
        check_image_archive(sneaky)

    missing = rewrite_member(archive, tmp_path / "missing.tar", "manifest.json", json.dumps(
        [{**manifest[0], "Layers": ["nowhere/layer.tar"]}]).encode())
    with pytest.raises(ValueError, match="nowhere/layer.tar is listed but missing"):
        check_image_archive(missing)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("members, message", [
    ([(_info("index.html"), b"<p>site</p>")], "manifest.json is missing"),
    ([(_info("manifest.json"), b"{not json")], "not JSON"),
    ([(_info("manifest.json"), b"[]")], "lists no image"),
    ([(_info("manifest.json"), b'{"Config": "x"}')], "lists no image"),
    ([(_info("../escape"), b"x")], "unsafe path"),
    ([(_info("/etc/passwd"), b"x")], "unsafe path"),
    ([(_info("dev", tarfile.CHRTYPE), b"")], "not a file or directory"),
    ([(_info("hard", tarfile.LNKTYPE, "manifest.json"), b"")], "not a file or directory"),
    ([(_info("a/layer.tar", tarfile.SYMTYPE, "../../outside"), b"")], "points outside"),
    ([(_info("manifest.json"), b"[]"), (_info("./manifest.json"), b"[]")], "appears twice"),
])
def test_non_image_archives_are_refused(tmp_path, members, message):
    with pytest.raises(ValueError, match=message):
        check_image_archive(_tar(tmp_path / "x.tar", members))


def test_non_tar_file_is_refused(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all\n" * 100)
    with pytest.raises(ValueError, match="not a tar archive"):
        check_image_archive(junk)


@pytest.mark.docker
def test_load_allowed_archive(docker_client, docker_prefix, tiny_images, tmp_path):
    ref = allowed_ref(docker_prefix, "loaded")
    archive = save_as(docker_client, tiny_images[0], ref, tmp_path / "app.tar")
    try:
        assert load_image_archive(docker_client, archive, [REGISTRY], []) == [ref]
        assert docker_client.images.get(ref).id == docker_client.images.get(tiny_images[0]).id
        # The same content again under the same tag is fine (nothing moves).
        assert load_image_archive(docker_client, archive, [REGISTRY], []) == [ref]
        # Other content under an existing tag would silently replace what runs: refused.
        other = save_as(docker_client, tiny_images[1], ref + "0", tmp_path / "other.tar")
        clash = rewrite_member(other, tmp_path / "clash.tar", "manifest.json", json.dumps([{
            **json.loads(tarfile.open(other).extractfile("manifest.json").read())[0],
            "RepoTags": [ref]}]).encode())
        with pytest.raises(ValueError, match="already exists with different content"):
            load_image_archive(docker_client, clash, [REGISTRY], [])
        assert docker_client.images.get(ref).id == docker_client.images.get(tiny_images[0]).id
    finally:
        _remove_image(docker_client, ref)


@pytest.mark.docker
def test_disallowed_tag_is_never_loaded(docker_client, docker_prefix, tiny_images, tmp_path):
    ref = f"ghcr.io/{docker_prefix}/app:1"
    archive = save_as(docker_client, tiny_images[1], ref, tmp_path / "bad.tar")
    with pytest.raises(ValueError, match=f"not allowed by the catalogue: {ref}"):
        load_image_archive(docker_client, archive, [REGISTRY], [])
    assert not image_exists(docker_client, ref)
    latest = save_as(docker_client, tiny_images[1], allowed_ref(docker_prefix)[:-2] + ":latest",
                     tmp_path / "latest.tar")
    with pytest.raises(ValueError, match="not allowed"):
        load_image_archive(docker_client, latest, [REGISTRY], [])


@pytest.mark.docker
def test_loaded_tags_are_rechecked(docker_client, docker_prefix, tiny_images, tmp_path,
                                   monkeypatch):
    """If the pre-check were ever fooled, what Docker actually loaded is checked and undone."""
    ref = f"{docker_prefix}-evil/app:1"
    archive = save_as(docker_client, tiny_images[1], ref, tmp_path / "evil.tar")
    real = app_images._archive_images(str(archive), app_images.MAX_ARCHIVE_BYTES)
    monkeypatch.setattr(app_images, "_archive_images",
                        lambda path, max_bytes: [(real[0][0], [allowed_ref(docker_prefix)])])
    with pytest.raises(ValueError, match=f"does not allow \\({ref}\\); it was removed again"):
        load_image_archive(docker_client, archive, [REGISTRY], [])
    assert not image_exists(docker_client, ref)
    assert image_exists(docker_client, tiny_images[1])  # the older tag of that image stays


@pytest.mark.docker
def test_refused_load_gives_moved_tags_back(docker_client, docker_prefix, tiny_images, tmp_path,
                                           monkeypatch):
    """A fooled pre-check must not leave an existing tag pointing at the uploaded image."""
    a_id = docker_client.images.get(tiny_images[0]).id
    archive = save_as(docker_client, tiny_images[1], None, tmp_path / "b.tar")
    manifest = json.loads(tarfile.open(archive).extractfile("manifest.json").read())
    hijack = rewrite_member(archive, tmp_path / "hijack.tar", "manifest.json", json.dumps(
        [{**manifest[0], "RepoTags": [tiny_images[0]]}]).encode())
    real = app_images._archive_images(str(hijack), app_images.MAX_ARCHIVE_BYTES)
    monkeypatch.setattr(app_images, "_archive_images",
                        lambda path, max_bytes: [(real[0][0], [allowed_ref(docker_prefix)])])
    with pytest.raises(ValueError, match="it was removed again"):
        load_image_archive(docker_client, hijack, [REGISTRY], [])
    assert docker_client.images.get(tiny_images[0]).id == a_id
    assert image_exists(docker_client, tiny_images[1])
