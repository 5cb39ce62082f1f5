"""Fixtures and helpers of the Images page tests: the app wired to the session's registry, tiny
images saved from the engine, repositories to clean, snapshots of the engine and the registry."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Account, AuditEvent
from controlplane.registry import tokens
from provisioners.registry import skopeo
from tests.conftest import run_worker
from tests.registry.archives import build_tiny, docker_save, remove_image

MiB = 1024 * 1024
BOUND = 32 * MiB  # APP_IMAGE_MAX_UNPACKED_BYTES in these tests


@pytest.fixture
def image_app(docker_app, registry):
    docker_app.config.update(registry["settings"])
    docker_app.config.update(APP_IMAGE_MAX_UNPACKED_BYTES=BOUND)
    return docker_app


@pytest.fixture
def set_quota(image_app, monkeypatch):
    plans = image_app.extensions["policies"].plans

    def set_(mib: int, plan: str = "ministry") -> None:
        monkeypatch.setitem(plans, plan, dataclasses.replace(plans[plan], registry_mib=mib))

    return set_


@pytest.fixture
def created(image_app):
    """Repositories this test pushes to: every tag left in them is deleted at the end."""
    repositories: list[str] = []
    yield repositories
    with image_app.app_context(), tokens.api_client() as client:
        for repository in repositories:
            for tag in client.tags(repository):
                client.delete(repository, client.manifest(repository, tag).digest)


@pytest.fixture
def saved(docker_client, docker_prefix, tmp_path):
    """`saved(name)`: a tiny image built locally, `docker save`d, then removed from the engine
    again; (archive path, image id)."""
    refs = []

    def make(ref: str, text: str | None = None) -> tuple[Path, str]:
        image_id = build_tiny(docker_client, ref, text or f"{ref} {docker_prefix}\n")
        refs.append(ref)
        archive = docker_save(ref, tmp_path / f"{len(refs)}.tar")
        remove_image(docker_client, ref)
        return archive, image_id

    yield make
    for ref in refs:
        remove_image(docker_client, ref)


def login(client, auth, user: str) -> None:
    auth.login(user)
    with client.session_transaction() as session:
        session["lang"] = "en"


def upload(auth, data: bytes, name: str = ""):
    return auth.post("/portal/images", {"archive": (io.BytesIO(data), "image.tar"),
                                        "name": name},
                     page="/portal/images", content_type="multipart/form-data")


def imported(app, client, response) -> dict:
    """Run the worker for the upload `response` redirected to; the task's final state."""
    assert response.status_code == 302, response.get_data(as_text=True)[-2000:]
    task_url = response.headers["Location"]
    with app.app_context():
        for account in db.session.scalars(select(Account)):
            account.locale = "en"  # the job words its refusals in the uploader's language
        db.session.commit()
    run_worker(app)
    return client.get(task_url + ".json").get_json()


def registry_tags(app, namespace: str | None) -> dict[str, str]:
    """`repository:tag` -> manifest digest for everything under `namespace/` (None: all)."""
    with app.app_context(), tokens.api_client() as client:
        return {f"{i.repository}:{i.tag}": i.digest
                for i in skopeo.namespace_images(client, namespace, created=False)}


def engine_tags(docker_client, prefix: str = "comgov/") -> dict[str, str]:
    return {tag: image.id for image in docker_client.images.list()
            for tag in image.tags if tag.startswith(prefix) or f"/{prefix}" in tag}


def storage_bytes(registry) -> int:
    return sum(p.stat().st_size for p in Path(registry["root"], "data").rglob("*")
               if p.is_file())


def events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
