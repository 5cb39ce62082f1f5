"""Application image archives uploaded through the portal: namespace checked, loaded by a worker."""
from __future__ import annotations

import io
import tarfile

import docker.errors
import pytest

from tests.conftest import run_worker

pytestmark = pytest.mark.docker


def tiny_archive(client, ref: str) -> bytes:
    """`docker save` of a few-byte image FROM scratch, tagged ref."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello.txt /hello.txt\n"),
                           ("hello.txt", ref.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = client.images.build(fileobj=buf, custom_context=True, tag=ref, rm=True)
    data = b"".join(image.save(named=ref))
    client.images.remove(ref, force=True)
    return data


def upload(auth, data: bytes):
    return auth.post("/portal/images", {"archive": (io.BytesIO(data), "image.tar")},
                     page="/portal/images", content_type="multipart/form-data")


def test_upload_loads_an_image_of_the_institution(docker_app, client, auth, docker_client,
                                                  docker_prefix):
    ref = f"registry.dc.gov.bi/minisante/{docker_prefix}-tiny:1.0"
    auth.login("fp.sante")
    response = upload(auth, tiny_archive(docker_client, ref))
    assert response.status_code == 302, response.get_data(as_text=True)[-1000:]
    task_url = response.headers["Location"]
    run_worker(docker_app)
    state = client.get(task_url + ".json").get_json()
    assert state["status"] == "done" and ref in state["message"]
    assert docker_client.images.get(ref)
    docker_client.images.remove(ref, force=True)


@pytest.mark.parametrize("ref", ["registry.dc.gov.bi/obr/stolen:1.0", "nginx:1.25"])
def test_upload_outside_the_namespace_is_refused(docker_app, client, auth, docker_client,
                                                 docker_prefix, ref):
    ref = ref.replace("stolen", f"{docker_prefix}-stolen")
    auth.login("fp.sante")
    response = upload(auth, tiny_archive(docker_client, ref))
    assert response.status_code == 422
    assert 'class="flash error"' in response.get_data(as_text=True)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(ref)


def test_not_an_image_archive(docker_app, auth):
    auth.login("fp.sante")
    assert upload(auth, b"this is not a tar").status_code == 422
