"""Issue 9, item 7, for uploads: the `d -> .` second-manifest archive never touches `comgov/`
(refused, or imported under the institution's namespace only), a layer bomb is refused before
anything is written, the registry quota refuses what would not fit.

Snapshots of `comgov/*` on the engine and in the registry are taken before and compared after.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from controlplane.registry import tokens
from provisioners.registry import skopeo
from tests.kinds.application.conftest import (
    BOUND,
    MiB,
    engine_tags,
    events,
    imported,
    login,
    registry_tags,
    storage_bytes,
    upload,
)
from tests.registry.archives import hostile, image_exists, tar_layer, write_archive, zero_bomb

pytestmark = pytest.mark.docker


@pytest.fixture
def victim(image_app, registry, saved, docker_prefix, tmp_path):
    """`comgov/base:bookworm` in the session's registry (what the attacker aims at), pushed with
    a platform token, removed at the end; its digest."""
    archive, _ = saved(f"{docker_prefix}-victim/base:bookworm")
    with image_app.app_context():
        token = tokens.internal_token("repository:comgov/base:push,pull")
    with skopeo.scratch_space(tmp_path / "victim-scratch", 64 * MiB) as tmp:
        digest = skopeo.copy_archive(archive, f"{registry['address']}/comgov/base:bookworm",
                                     token=token, tls_verify=False, tmpdir=tmp)
    yield digest
    with image_app.app_context(), tokens.api_client() as client:
        if client.tags("comgov/base"):
            client.delete("comgov/base", digest)


def test_the_second_manifest_trick_never_reaches_comgov(image_app, client, auth, registry,
                                                       docker_client, docker_prefix, saved,
                                                       created, victim, tmp_path):
    archive, attacker_id = saved(f"registry.dc.gov.bi/minisante/{docker_prefix}-app:1")
    trick = hostile(archive, tmp_path / "hostile.tar", claimed="comgov/base:bookworm")
    engine_before = engine_tags(docker_client)
    registry_before = registry_tags(image_app, "comgov")
    assert registry_before["comgov/base:bookworm"] == victim

    # 1. Through the page: refused at once, nothing queued or kept.
    login(client, auth, "fp.sante")
    resp = upload(auth, trick.read_bytes())
    assert resp.status_code == 422
    assert "not an image archive written by docker save" in resp.get_data(as_text=True)
    assert events(image_app, "image.uploaded") == []
    assert not list(Path(image_app.instance_path, "image-uploads").glob("*.tar"))

    # 2. An archive that simply claims comgov/base:bookworm (and the registry's own address):
    #    imported, but as minisante/base:bookworm.
    entry = json.loads(tarfile.open(archive).extractfile("manifest.json").read())[0]
    claims = tmp_path / "claims.tar"
    with tarfile.open(archive) as old, tarfile.open(claims, "w") as new:
        for member in old:
            if member.name == "manifest.json":
                data = json.dumps([{**entry, "RepoTags": [
                    "comgov/base:bookworm",
                    f"{registry['address']}/comgov/base:bookworm"]}]).encode()
                member.size = len(data)
                new.addfile(member, io.BytesIO(data))
            else:
                new.addfile(member, old.extractfile(member) if member.isfile() else None)
    created.append("minisante/base")
    state = imported(image_app, client, upload(auth, claims.read_bytes()))
    assert state["status"] == "done", state
    assert state["message"] == f"{registry['address']}/minisante/base:bookworm"

    # 3. Even handed to skopeo as is (as if the check had been fooled), the hostile tar can only
    #    go where the control plane sends it, with a token for that repository alone.
    repository = f"minisante/{docker_prefix}-hostile"
    created.append(repository)
    with image_app.app_context():
        token = tokens.internal_token(f"repository:{repository}:push,pull")
    with skopeo.scratch_space(tmp_path / "scratch", 64 * MiB) as tmp:
        try:
            skopeo.copy_archive(trick, f"{registry['address']}/{repository}:1", token=token,
                                tls_verify=False, tmpdir=tmp)
        except skopeo.SkopeoError:
            pass  # refused by skopeo itself: fine as well

    # Afterwards: comgov/* unchanged on the engine and in the registry; the attacker's image
    # was never loaded into the engine; everything new is under minisante/.
    assert engine_tags(docker_client) == engine_before
    assert not image_exists(docker_client, attacker_id)
    assert registry_tags(image_app, "comgov") == registry_before
    new = set(registry_tags(image_app, None)) - set(registry_before)
    assert new and all(ref.startswith("minisante/") for ref in new), new


def test_a_layer_bomb_is_refused_before_anything_is_written(image_app, client, auth, registry,
                                                            docker_prefix, tmp_path):
    bomb = zero_bomb(2 * BOUND)  # inflates to twice the bound
    assert len(bomb) < BOUND // 100
    archive, _ = write_archive(tmp_path / "bomb.tar", [tar_layer({"x": b"x"}), bomb],
                               [f"{docker_prefix}-bomb:1"])
    before = storage_bytes(registry)
    scratch = Path(image_app.instance_path, "image-uploads", "scratch")
    login(client, auth, "fp.sante")
    state = imported(image_app, client, upload(auth, archive.read_bytes()))
    assert state["status"] == "failed"
    assert "unpack to more than 32 MiB, the limit for one uploaded image" in state["message"]
    assert storage_bytes(registry) == before
    assert f"minisante/{docker_prefix}-bomb:1" not in registry_tags(image_app, "minisante")
    assert not scratch.exists()  # skopeo never ran: no scratch folder was even made
    assert not list(Path(image_app.instance_path, "image-uploads").glob("*.tar"))
    [refused] = events(image_app, "image.refused")
    assert "unpack to more than" in refused.after["reason"]


def test_the_registry_quota_refuses_what_would_not_fit(image_app, client, auth, saved,
                                                      docker_prefix, set_quota):
    archive, _ = saved(f"{docker_prefix}-fits:1")
    login(client, auth, "fp.sante")
    with image_app.app_context():
        used = tokens.namespace_use("minisante", fresh=True).used
    set_quota(used // MiB)  # full
    resp = upload(auth, archive.read_bytes())
    assert resp.status_code == 422
    text = resp.get_data(as_text=True)
    assert "would exceed your institution’s registry quota" in text
    assert "The quota is reached" in text  # the page says so too
    assert not list(Path(image_app.instance_path, "image-uploads").glob("*.tar"))

    # Accepted while it fits, then the quota shrinks before the worker runs: the job refuses.
    set_quota(used // MiB + 100)
    resp = upload(auth, archive.read_bytes())
    assert resp.status_code == 302
    set_quota(0)
    state = imported(image_app, client, resp)
    assert state["status"] == "failed" and "registry quota" in state["message"]
    assert f"minisante/{docker_prefix}-fits:1" not in registry_tags(image_app, "minisante")
