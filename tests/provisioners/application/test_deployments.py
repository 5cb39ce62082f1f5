"""Blue/green deployments' names and guards (no Docker call is made before they refuse)."""
from __future__ import annotations

import dataclasses

import pytest

from provisioners.application import container as application
from provisioners.application.container import ApplicationSpec
from provisioners.docker.runtime import Limits

DIGEST = "sha256:" + "c" * 64


def spec(**overrides) -> ApplicationSpec:
    values = dict(service_id=7, institution_id=1, institution="MINISANTE",
                  hostname="web.minisante.gov.bi", image="comgov-test/app:1", port=8080,
                  environment={}, health_path="/health",
                  limits=Limits(memory_bytes=64 << 20, nano_cpus=500_000_000, pids=64),
                  prefix="cpt000000", volume_path=None)
    values.update(overrides)
    return ApplicationSpec(**values)


def test_one_function_names_every_deployment_container():
    assert application.app_container_name("comgov", 7) == "comgov-app-7"
    assert application.app_container_name("comgov", 7, 12) == "comgov-app-7-d12"
    assert application.container_name(spec()) == "cpt000000-app-7"
    assert application.container_name(spec(deployment=3)) == "cpt000000-app-7-d3"
    for marker in (0, -1, True, "3", 1.5):
        with pytest.raises(ValueError):
            application.app_container_name("comgov", 7, marker)


def test_a_deployment_needs_its_own_container_of_the_same_application():
    current = spec(deployment=2)
    with pytest.raises(ValueError, match="its own container"):
        application.deploy_application(None, current, dataclasses.replace(current, image="x:2"),
                                       proxy=None)
    with pytest.raises(ValueError, match="same application"):
        application.deploy_application(None, current, spec(service_id=8, deployment=3),
                                       proxy=None)


@pytest.mark.parametrize("repository, reference", [
    ("127.0.0.1:5001/minisante/web", "latest; rm"),
    ("127.0.0.1:5001/minisante/web", "sha256:short"),
    ("127.0.0.1:5001/Minisante/web", "1"),
    ("127.0.0.1:5001/minisante/web@sha256:" + "c" * 64, "1"),
    ("minisante web", DIGEST),
    ("", DIGEST),
])
def test_a_pull_names_a_repository_and_a_tag_or_digest(repository, reference):
    with pytest.raises(ValueError):
        application.pull_image(None, repository, reference, "token")
