"""The Images page against the real registry and engine: a `docker save` archive is imported by
skopeo into `<acronym>/<name>:<tag>` (never `docker load`), listed with digest, size and date,
deleted; an archive without a name takes the form's.

Every image and tag made here is recorded and removed (the registry is the session's own)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Task
from tests.kinds.application.conftest import events, imported, login, registry_tags, upload
from tests.registry.archives import image_exists, tar_layer, write_archive

pytestmark = pytest.mark.docker


# --------------------------------------------------------------------------- the normal path

def test_an_archive_lands_in_the_namespace_shows_on_the_page_and_deletes(
        image_app, client, auth, registry, docker_client, docker_prefix, saved, created):
    name = f"{docker_prefix}-tiny"
    archive, image_id = saved(f"registry.dc.gov.bi/whatever/{name}:1.0")
    repository = f"minisante/{name}"
    created.append(repository)
    login(client, auth, "fp.sante")
    state = imported(image_app, client, upload(auth, archive.read_bytes()))
    reference = f"{registry['address']}/{repository}:1.0"
    assert state["status"] == "done", state
    assert state["message"] == reference
    stored = registry_tags(image_app, "minisante")
    digest = stored[f"{repository}:1.0"]
    assert not image_exists(docker_client, image_id)  # never loaded into the engine
    with image_app.app_context():
        task = db.session.scalar(select(Task).where(Task.kind == "image_import"))
        assert task.params["digest"] == digest and not list(Path(
            image_app.instance_path, "image-uploads").glob("*.tar"))
    [done] = events(image_app, "image.imported")
    assert done.after["reference"] == reference and done.after["image_id"] == image_id
    assert done.after["claimed_tags"] == [f"registry.dc.gov.bi/whatever/{name}:1.0"]

    page = client.get("/portal/images").get_data(as_text=True)
    assert f"{registry['address']}/{repository}" in page and digest[:19] in page
    assert "used of 20.0 GiB (registry quota)" in page
    assert "2026-" in page or "2027-" in page  # the configuration's date

    # Another institution's focal point cannot delete it (404), an auditor has no page.
    auth.logout()
    login(client, auth, "fp.obr")
    assert repository not in client.get("/portal/images").get_data(as_text=True)
    resp = auth.post("/portal/images/delete", {"repository": repository, "digest": digest},
                     page="/portal/images")
    assert resp.status_code == 404
    auth.logout()
    login(client, auth, "au.one")
    assert client.get("/portal/images").status_code == 403
    auth.logout()
    # Operators see every namespace, upload nothing.
    login(client, auth, "op.one")
    assert repository in client.get("/portal/images").get_data(as_text=True)
    assert upload(auth, archive.read_bytes()).status_code == 403
    auth.logout()

    login(client, auth, "fp.sante")
    resp = auth.post("/portal/images/delete", {"repository": repository, "digest": digest},
                     page="/portal/images")
    assert resp.status_code == 302
    assert f"{repository}:1.0" not in registry_tags(image_app, "minisante")
    [deleted] = events(image_app, "image.deleted")
    assert deleted.before == {"repository": repository, "digest": digest, "tags": ["1.0"]}
    assert deleted.actor == "fp.sante"
    assert "deleted" in client.get("/portal/images").get_data(as_text=True)


def test_an_archive_without_a_name_takes_the_one_given_on_the_form(
        image_app, client, auth, docker_prefix, created, tmp_path):
    untagged, _ = write_archive(tmp_path / "untagged.tar",
                                [tar_layer({"hello.txt": docker_prefix.encode()})], None)
    login(client, auth, "fp.sante")
    resp = upload(auth, untagged.read_bytes())
    assert resp.status_code == 422
    assert "carries no usable image name" in resp.get_data(as_text=True)
    resp = upload(auth, untagged.read_bytes(), name="Not A Name")
    assert resp.status_code == 422 and "is not a valid image name" in resp.get_data(as_text=True)
    created.append(f"minisante/{docker_prefix}-given")
    state = imported(image_app, client, upload(auth, untagged.read_bytes(),
                                               name=f"{docker_prefix}-given:2"))
    assert state["status"] == "done", state
    assert f"minisante/{docker_prefix}-given:2" in registry_tags(image_app, "minisante")


def test_not_an_image_archive(image_app, client, auth):
    login(client, auth, "fp.sante")
    resp = upload(auth, b"this is not a tar")
    assert resp.status_code == 422 and "not a tar archive" in resp.get_data(as_text=True)
