"""A site upload: the portal stores the archive as received, the deploy job checks it in full.

Real Redis, slapd and RQ worker; the website kind's deploy (Docker) is replaced by a recorder.
"""
from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest
from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Account, AuditEvent, ContentUpload, Institution, Service
from controlplane.kinds.website.kind import Website
from controlplane.services import content
from tests.conftest import run_worker

MIB = 1024 * 1024


@pytest.fixture
def website(app):
    with app.app_context():
        inst = db.session.scalar(select(Institution).where(Institution.acronym == "MINISANTE"))
        svc = Service(institution_id=inst.id, kind="website", hostname="www.minisante.gov.bi",
                      size="S", status="running")
        db.session.add(svc)
        db.session.commit()
        return svc.id


@pytest.fixture
def deployed(monkeypatch):
    """What the job hands to the kind: the members of the clean tar, per deployment."""
    calls = []

    def deploy(self, svc, archive):
        with tarfile.open(archive) as tar:
            calls.append({m.name: (m.mode, m.uid) for m in tar.getmembers()})

    monkeypatch.setattr(Website, "deploy", deploy)
    return calls


def upload(auth, service_id: int, data: bytes, filename: str = "site.zip"):
    return auth.post(f"/services/{service_id}/content",
                     {"archive": (io.BytesIO(data), filename)}, page=f"/services/{service_id}",
                     content_type="multipart/form-data", follow_redirects=True)


def zip_of(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in entries:
            zf.writestr(name, text)
    return buf.getvalue()


def test_stored_as_received_then_checked_and_counted_by_the_job(app, auth, website, deployed):
    data = zip_of([("index.html", "<h1>Muraho</h1>"), ("css/site.css", "body{}")])
    auth.login("fp.sante")
    page = upload(auth, website, data).get_data(as_text=True)
    assert "Archive reçue" in page
    with app.app_context():
        row = db.session.scalar(select(ContentUpload))
        assert (row.status, row.files, row.size_bytes) == ("pending", 0, 0)
        assert content.upload_path(row).read_bytes() == data  # as received, not unpacked
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "service.content_uploaded"))
        assert event.after == {"upload": row.id, "filename": "site.zip",
                               "archive_bytes": len(data)}

    run_worker(app)
    assert deployed == [{"index.html": (0o644, 0), "css/site.css": (0o644, 0)}]
    with app.app_context():
        row = db.session.scalar(select(ContentUpload))
        assert (row.status, row.files, row.size_bytes) == ("deployed", 2, 21)
        assert list(content.upload_folder(website).iterdir()) == []
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "service.content_deployed"))
        assert event.after["files"] == 2 and event.after["bytes"] == 21


@pytest.mark.parametrize("locale, message", [
    (None, "L’archive contient un chemin absolu (/etc/passwd)"),
    ("en", "The archive contains an absolute path (/etc/passwd)"),
])
def test_refused_by_the_job_in_the_uploaders_language(app, auth, website, deployed, locale,
                                                      message):
    """Beyond the portal's quick look: refused by the job, the site untouched."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("photo.jpg", os.urandom(2 * MIB)), ("/etc/passwd", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    auth.login("fp.sante")
    with app.app_context():
        db.session.scalar(select(Account).where(Account.username == "fp.sante")).locale = locale
        db.session.commit()
    page = upload(auth, website, buf.getvalue(), "site.tgz").get_data(as_text=True)
    assert ("Archive received" if locale == "en" else "Archive reçue") in page

    run_worker(app)
    assert deployed == []
    with app.app_context():
        row = db.session.scalar(select(ContentUpload))
        assert row.status == "failed" and row.error.startswith(message)
        assert list(content.upload_folder(website).iterdir()) == []
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "service.content_failed"))
        assert event.after == {"upload": row.id, "error": row.error}
        assert db.session.get(Service, website).content_deployed_at is None


def test_over_the_limit_refused_while_streaming_and_nothing_kept(app, auth, website):
    app.config["UPLOAD_MAX_BYTES"] = MIB
    auth.login("fp.sante")
    page = upload(auth, website, b"\0" * (2 * MIB), "site.tar").get_data(as_text=True)
    assert "L’archive est trop volumineuse : la limite est de 1 Mio." in page
    with app.app_context():
        assert db.session.scalar(select(ContentUpload)) is None
        assert list(content.upload_folder(website).iterdir()) == []
