"""provisioners/registry/skopeo.py against the real registry: a `docker save` archive copied in
with a token for exactly its repository, read back (digest, size, date), the scratch folder's
size limit and its removal."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from controlplane.registry import tokens
from provisioners.registry import skopeo
from tests.registry.archives import build_tiny, docker_save, image_exists, remove_image

pytestmark = [pytest.mark.docker]
MiB = 1024 * 1024


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return any(line.split()[4] == str(path) for line in fh)


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:5001", True), ("127.8.9.10", True), ("localhost:5000", True),
    ("[::1]:5000", True), ("registry.dc.gov.bi", False), ("10.0.0.5:5000", False),
    ("127.0.0.1.evil.example:5000", False),
])
def test_loopback_addresses(address, expected):
    assert skopeo.is_loopback(address) is expected


@pytest.mark.parametrize("destination", [
    "127.0.0.1:5001/minisante", "127.0.0.1:5001/x:1", "127.0.0.1:5001/Mini/x:1",
    "127.0.0.1:5001/a/b:", "a b/c/d:1", "127.0.0.1:5001/a/../b:1", "/a/b:1",
])
def test_bad_destinations_are_refused(destination):
    with pytest.raises(ValueError):
        skopeo.check_destination(destination)


def test_the_scratch_folder_is_size_limited_and_removed(tmp_path):
    if not skopeo._can_mount():
        pytest.skip("needs root to loop-mount")
    root = tmp_path / "scratch"
    with skopeo.scratch_space(root, 64 * MiB) as folder:
        assert _mounted(folder) and oct(folder.stat().st_mode & 0o777) == "0o700"
        with pytest.raises(OSError) as info:
            with open(folder / "fill", "wb") as out:
                for _ in range(80):
                    out.write(bytes(MiB))
                    out.flush()
                    os.fsync(out.fileno())
        assert info.value.errno == errno.ENOSPC
    assert not _mounted(folder)
    assert list(root.iterdir()) == []  # the image file and the mount point are gone


def test_without_a_mount_free_space_is_checked_first(tmp_path):
    with pytest.raises(skopeo.SkopeoError, match="not enough free space"):
        with skopeo.scratch_space(tmp_path, 1 << 60, loop=False):
            pass
    with skopeo.scratch_space(tmp_path / "plain", 64 * MiB, loop=False) as folder:
        (folder / "x").write_bytes(b"x")
    assert list((tmp_path / "plain").iterdir()) == []


@pytest.fixture
def saved_tiny(docker_client, docker_prefix, tmp_path):
    ref = f"{docker_prefix}-skopeo/tiny:1"
    image_id = build_tiny(docker_client, ref, f"skopeo {docker_prefix}\n")
    archive = docker_save(ref, tmp_path / "tiny.tar")
    remove_image(docker_client, ref)
    yield archive, image_id


def test_copy_an_archive_with_a_token_for_its_repository_only(registry_app, registry,
                                                             docker_client, docker_prefix,
                                                             saved_tiny, tmp_path):
    archive, image_id = saved_tiny
    repository = f"minisante/{docker_prefix}-copied"
    with registry_app.app_context():
        token = tokens.internal_token(f"repository:{repository}:push,pull")
        other = tokens.internal_token("repository:minisante/elsewhere:push,pull")
    destination = f"{registry['address']}/{repository}:1.0"
    with skopeo.scratch_space(tmp_path / "scratch", 64 * MiB) as tmp:
        digest = skopeo.copy_archive(archive, destination, token=token, tls_verify=False,
                                     tmpdir=tmp)
        # A token for another repository: the registry itself refuses the push; the error
        # never repeats the token.
        with pytest.raises(skopeo.SkopeoError) as info:
            skopeo.copy_archive(archive, f"{registry['address']}/obr/{docker_prefix}:1",
                                token=other, tls_verify=False, tmpdir=tmp)
        assert other not in str(info.value)
        assert "unauthorized" in str(info.value).lower() or "denied" in str(info.value).lower()
    assert not image_exists(docker_client, image_id)  # the engine never saw it
    with registry_app.app_context(), tokens.api_client() as client:
        try:
            images = skopeo.namespace_images(client, "minisante")
            mine = [i for i in images if i.repository == repository]
            assert [(i.tag, i.digest) for i in mine] == [("1.0", digest)]
            assert mine[0].created is not None and mine[0].created.year >= 2026
            assert mine[0].size == client.manifest(repository, "1.0").size
            assert image_id in {d for d, _ in mine[0].blobs}  # the config, by its digest
            assert skopeo.stored_bytes(mine + mine) == mine[0].size  # counted once
            assert not [i for i in images if not i.repository.startswith("minisante/")]
            assert client.tags(f"obr/{docker_prefix}") == []
        finally:
            if client.tags(repository):
                client.delete(repository, digest)
        assert client.tags(repository) == []
