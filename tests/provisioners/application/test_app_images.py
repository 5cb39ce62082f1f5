"""The image catalogue rule and uploaded `docker save` archives read without any engine: the
checks, the name an import gets, the layers' unpacked size (bombs)."""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from provisioners.application.image_archives import (
    ArchiveRefused,
    check_image_archive,
    destination_name,
    image_allowed,
    read_image_archive,
    split_name,
    unpacked_size,
)
from tests.registry.archives import (
    build_tiny,
    hostile,
    image_exists,
    remove_image,
    tar_layer,
    write_archive,
    zero_bomb,
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


# --- the name an import gets -----------------------------------------------------------------
@pytest.mark.parametrize("tags, fallback, expected", [
    (["registry.dc.gov.bi/minisante/portail:1.0"], None, ("portail", "1.0")),
    (["comgov/base:bookworm"], None, ("base", "bookworm")),            # renamed, never comgov/
    (["127.0.0.1:5001/obr/x:2"], "y:1", ("x", "2")),                   # the archive's name first
    (["Evil/UPPER:1", "ok/name:v2"], None, ("name", "v2")),            # first valid one
    (["x@sha256:" + "a" * 64], "mine:3", ("mine", "3")),                # no tag: the form's name
    ([], "portail:1.0", ("portail", "1.0")),
    ([], None, None),
    ([], "portail", None),                                             # a version is needed
    ([], "a/b:1", None),                                               # one component only
    ([], "../x:1", None),
    (["x:" + "t" * 129], None, None),                                  # tag too long
])
def test_destination_name(tags, fallback, expected):
    assert destination_name(tags, fallback) == expected


def test_split_name_refuses_everything_but_name_and_tag():
    assert split_name("portail:1.0") == ("portail", "1.0")
    for bad in ("", ":1", "portail:", "Portail:1", "por tail:1", "a:b:c", "x" * 129 + ":1",
                "p:-1", None):
        assert split_name(bad) is None, bad


# --- archives --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_images(docker_client, docker_prefix):
    """Two few-byte images FROM scratch (the base image would make 200 MB archives)."""
    refs = []
    for letter in "ab":
        ref = f"{docker_prefix}-src/{letter}:1"
        build_tiny(docker_client, ref, f"hello {letter} {docker_prefix}\n")
        refs.append(ref)
    yield refs
    for ref in refs:
        remove_image(docker_client, ref)


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
            client.images.remove(ref)
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


@pytest.mark.docker
def test_check_reads_a_real_archive_without_loading(docker_client, docker_prefix, tiny_images,
                                                    tmp_path):
    ref = f"{REGISTRY}{docker_prefix}/app:1"
    archive = save_as(docker_client, tiny_images[0], ref, tmp_path / "app.tar")
    assert archive.stat().st_size < 64 * 1024
    image = read_image_archive(archive, max_bytes=1 << 20)
    assert image.tags == (ref,) and len(image.layers) == 1
    assert image.image_id == docker_client.images.get(tiny_images[0]).id
    assert check_image_archive(archive, max_bytes=1 << 20) == [ref]
    assert not image_exists(docker_client, ref)
    with pytest.raises(ArchiveRefused, match="limit is 1000") as info:
        check_image_archive(archive, max_bytes=1000)
    assert info.value.code == "too_large"

    # Saved by id: no name in the archive (the form's name is then needed), still an image.
    untagged = save_as(docker_client, tiny_images[0], None, tmp_path / "untagged.tar")
    assert check_image_archive(untagged) == []

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

    two = rewrite_member(archive, tmp_path / "two.tar", "manifest.json",
                         json.dumps(manifest * 2).encode())
    with pytest.raises(ArchiveRefused, match="holds 2 images") as info:
        check_image_archive(two)
    assert info.value.code == "several_images"

    # The archive: `d -> .` and a second manifest claiming comgov/base:bookworm.
    with pytest.raises(ArchiveRefused, match="d is not a file of the archive|reached through "
                       "the link 'd'") as info:
        check_image_archive(hostile(archive, tmp_path / "hostile.tar"))
    assert info.value.code == "invalid"


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
    # a link to a directory, to itself, to nothing; a member reached through a link
    ([(_info("d", tarfile.SYMTYPE, "."), b"")], "d is not a file of the archive"),
    ([(_info("x", tarfile.DIRTYPE), b""), (_info("l", tarfile.SYMTYPE, "x"), b"")],
     "l is not a file of the archive"),
    ([(_info("loop", tarfile.SYMTYPE, "loop"), b"")], "loop is not a file of the archive"),
    ([(_info("gone", tarfile.SYMTYPE, "nothing"), b"")], "gone is not a file of the archive"),
    ([(_info("d/manifest.json"), b"[]"), (_info("d", tarfile.SYMTYPE, "."), b"")],
     "'d/manifest.json' is reached through the link 'd'"),
    # a symbolic link and a directory of the same name
    ([(_info("d", tarfile.SYMTYPE, "."), b""), (_info("d", tarfile.DIRTYPE), b"")],
     "'d' appears twice"),
])
def test_non_image_archives_are_refused(tmp_path, members, message):
    with pytest.raises(ArchiveRefused, match=message):
        check_image_archive(_tar(tmp_path / "x.tar", members))


def test_non_tar_file_is_refused(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all\n" * 100)
    with pytest.raises(ValueError, match="not a tar archive"):
        check_image_archive(junk)


def test_a_config_that_does_not_match_its_name_is_refused(tmp_path):
    path, image_id = write_archive(tmp_path / "a.tar", [tar_layer({"f": b"x"})], ["a:1"])
    config = f"{image_id.split(':')[1]}.json"
    forged = rewrite_member(path, tmp_path / "b.tar", config, b'{"os": "linux"}')
    with pytest.raises(ArchiveRefused, match="does not match its name"):
        read_image_archive(forged)


def test_layers_linked_to_another_layer_are_read_through_the_link(tmp_path):
    """docker save links a layer repeated under another id to the first copy; a layer listed
    twice counts twice (an engine unpacks it twice)."""
    layer = tar_layer({"f": b"x" * 3000})
    first, _ = write_archive(tmp_path / "a.tar", [layer], ["a:1"])
    name = json.loads(tarfile.open(first).extractfile("manifest.json").read())[0]["Layers"][0]
    path, _ = write_archive(tmp_path / "b.tar", [layer], ["a:1"], extra=[
        ("other", b"", tarfile.DIRTYPE, ""),
        ("other/layer.tar", b"", tarfile.SYMTYPE, f"../{name}")])
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    twice = rewrite_member(path, tmp_path / "c.tar", "manifest.json", json.dumps(
        [{**manifest[0], "Layers": [name, "other/layer.tar"]}]).encode())
    image = read_image_archive(twice)
    assert unpacked_size(twice, image, bound=1 << 20) == 2 * len(layer)


# --- layer bombs -----------------------------------------------------------------------------
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def bomb_layer():
    """64 MiB of zeros in a gzip layer of well under 1 MiB."""
    layer = zero_bomb(64 * MiB)
    assert len(layer) < MiB
    return layer


def test_a_gzip_bomb_is_refused_past_the_bound_in_bounded_memory(tmp_path, bomb_layer):
    path, _ = write_archive(tmp_path / "bomb.tar", [tar_layer({"a": b"a"}), bomb_layer],
                            ["bomb:1"])
    image = read_image_archive(path)
    before = sorted(p.name for p in tmp_path.iterdir())
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRefused, match=f"unpack to more than {16 * MiB} bytes") as info:
            unpacked_size(path, image, bound=16 * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "unpacked_too_large" and info.value.params == {"limit": 16 * MiB}
    assert peak < 8 * MiB, f"the check held {peak} bytes at once"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    # Under a bound it fits, it is counted exactly (the tar header, the zeros, the end).
    assert unpacked_size(path, image, bound=128 * MiB) == \
        len(tar_layer({"a": b"a"})) + 512 + 64 * MiB + 1024


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress])
def test_bzip2_and_xz_layers_are_counted_unpacked(tmp_path, compress):
    layer = zero_bomb(4 * MiB, compress=compress)
    path, _ = write_archive(tmp_path / "x.tar", [layer], ["x:1"])
    image = read_image_archive(path)
    assert unpacked_size(path, image, bound=8 * MiB) == 512 + 4 * MiB + 1024
    with pytest.raises(ArchiveRefused, match="unpack to more than"):
        unpacked_size(path, image, bound=2 * MiB)


def test_unmeasurable_layers_are_refused(tmp_path):
    zstd = b"\x28\xb5\x2f\xfd" + bytes(100)
    path, _ = write_archive(tmp_path / "z.tar", [zstd], ["z:1"])
    with pytest.raises(ArchiveRefused, match="zstd-compressed") as info:
        unpacked_size(path, read_image_archive(path), bound=MiB)
    assert info.value.code == "layer_format"
    broken = gzip.compress(bytes(10000))[:-30] + b"garbage" * 3
    path, _ = write_archive(tmp_path / "g.tar", [broken], ["g:1"])
    with pytest.raises(ArchiveRefused, match="not a valid gzip stream"):
        unpacked_size(path, read_image_archive(path), bound=MiB)
