"""Which application images may run as root: catalogue.yaml's run_as_root_images, exactly."""
from __future__ import annotations

import dataclasses
import shutil

import pytest
from sqlalchemy import select

import policies
from controlplane.core.extensions import db
from controlplane.core.models import Institution, Service
from controlplane.kinds import registry

LEGACY = "registry.dc.gov.bi/minisante/legacy:3.1"


def test_by_default_no_image_runs_as_root():
    assert policies.load().catalogue["application"].run_as_root_images == ()


def test_the_catalogue_lists_exact_images(app):
    with app.app_context():
        pol = app.extensions["policies"]
        entry = dataclasses.replace(pol.catalogue["application"], run_as_root_images=(LEGACY,))
        app.extensions["policies"] = dataclasses.replace(
            pol, catalogue={**pol.catalogue, "application": entry})
        institution = db.session.scalars(
            select(Institution).where(Institution.acronym == "MINISANTE")).one()
        kind = registry.get("application")

        def allow_root(image: str) -> bool:
            svc = Service(id=7, institution_id=institution.id, kind="application",
                          hostname="app.minisante.gov.bi", name="legacy", size="S",
                          params={"image": image, "port": 8080, "health_path": "/"})
            svc.institution = institution
            return kind.spec(svc).allow_root

        assert allow_root(LEGACY) is True
        assert allow_root("registry.dc.gov.bi/minisante/legacy:3.2") is False  # another version
        assert allow_root("registry.dc.gov.bi/minisante/other:3.1") is False


@pytest.mark.parametrize("value, message", [
    ("[registry.dc.gov.bi/minisante/legacy]", "run_as_root_images[0]: expected an image with "
     "its version tag (registry.dc.gov.bi/minisante/app:1.0), got "
     "'registry.dc.gov.bi/minisante/legacy'"),
    ("[registry.dc.gov.bi/minisante/legacy:latest]", "run_as_root_images[0]: expected an image "
     "with its version tag (registry.dc.gov.bi/minisante/app:1.0), got "
     "'registry.dc.gov.bi/minisante/legacy:latest'"),
    ("[Legacy:1]", "run_as_root_images[0]: expected an image with its version tag "
     "(registry.dc.gov.bi/minisante/app:1.0), got 'Legacy:1'"),
    ("[a/b:1, a/b:1]", "run_as_root_images[1]: listed twice, got 'a/b:1'"),
    ("yes", "run_as_root_images: expected a list: an image with its version tag "
     "(registry.dc.gov.bi/minisante/app:1.0) per line, got True"),
])
def test_a_bad_list_is_named_with_file_and_field(tmp_path, value, message):
    for path in policies.POLICIES_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "catalogue.yaml"
    text = target.read_text(encoding="utf-8")
    assert "run_as_root_images: []" in text
    target.write_text(text.replace("run_as_root_images: []", f"run_as_root_images: {value}"),
                      encoding="utf-8")
    with pytest.raises(policies.PolicyError) as info:
        policies.load(tmp_path)
    assert str(info.value) == f"catalogue.yaml: kinds.application.{message}"


def test_a_listed_image_loads(tmp_path):
    for path in policies.POLICIES_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "catalogue.yaml"
    target.write_text(target.read_text(encoding="utf-8").replace(
        "run_as_root_images: []", f"run_as_root_images: [{LEGACY}]"), encoding="utf-8")
    assert policies.load(tmp_path).catalogue["application"].run_as_root_images == (LEGACY,)
