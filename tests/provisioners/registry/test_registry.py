"""The registry's provisioner side against the real registry (distribution 2.8): its
configuration, the signing key and certificate it trusts, tokens it accepts or refuses, and the
API client (catalog, tags, manifest digest and size, delete by digest)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import stat
import tarfile
import time

import pytest
import requests
import yaml

from devtools import devstack
from provisioners.registry import configuration, signing
from provisioners.registry.api import MANIFEST_V2, RegistryClient, RegistryError


@pytest.fixture(scope="module")
def signer(registry):
    return signing.Signer.load(signing.material_paths(registry["auth_dir"]))


def _token(registry, signer, access, **overrides) -> str:
    fields = {"issuer": registry["issuer"], "audience": registry["service"],
              "subject": "tests", "access": access, "ttl": 60}
    fields.update(overrides)
    return signer.sign(**fields).text


def _repo_access(name: str, *actions: str) -> list[dict]:
    return [{"type": "repository", "name": name, "actions": list(actions)}]


def _upload(registry, token: str, repository: str, data: bytes) -> str:
    """A blob upload (POST then PUT with the digest), as a Docker client does."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    headers = {"Authorization": f"Bearer {token}"}
    start = requests.post(f"{registry['url']}/v2/{repository}/blobs/uploads/", headers=headers,
                          timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    if location.startswith("/"):
        location = registry["url"] + location
    sep = "&" if "?" in location else "?"
    done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=10,
                        headers={**headers, "Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return digest


def push_image(registry, signer, repository: str, tag: str) -> tuple[str, int]:
    """Push a one-layer image by the HTTP API; returns (manifest digest, total size)."""
    token = _token(registry, signer, _repo_access(repository, "pull", "push"))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = secrets.token_bytes(64)
        info = tarfile.TarInfo("blob.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue())
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    layer_digest = _upload(registry, token, repository, layer)
    config_digest = _upload(registry, token, repository, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_V2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer), "digest": layer_digest}],
    }).encode()
    resp = requests.put(f"{registry['url']}/v2/{repository}/manifests/{tag}", data=manifest,
                        timeout=10, headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": MANIFEST_V2})
    assert resp.status_code == 201, resp.text
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert resp.headers["Docker-Content-Digest"] == digest
    return digest, len(manifest) + len(config) + len(layer)


# --------------------------------------------------------------------------- configuration

def _spec(tmp_path, **overrides) -> configuration.RegistrySpec:
    fields = {"storage_dir": tmp_path / "data", "addr": "127.0.0.1:5001",
              "realm": "http://127.0.0.1:5000/v2/token", "service": "comgov-registry",
              "issuer": "comgov-controlplane", "rootcertbundle": tmp_path / "auth/token.crt",
              "http_secret": "s3cret"}
    fields.update(overrides)
    return configuration.RegistrySpec(**fields)


def test_the_configuration_has_filesystem_storage_deletes_and_token_auth(tmp_path):
    config = yaml.safe_load(configuration.render(_spec(tmp_path)))
    assert config["storage"]["filesystem"] == {"rootdirectory": str(tmp_path / "data")}
    assert config["storage"]["delete"] == {"enabled": True}
    assert config["http"]["addr"] == "127.0.0.1:5001"
    assert config["auth"] == {"token": {
        "realm": "http://127.0.0.1:5000/v2/token", "service": "comgov-registry",
        "issuer": "comgov-controlplane", "rootcertbundle": str(tmp_path / "auth/token.crt")}}


@pytest.mark.parametrize("field,value", [
    ("addr", "127.0.0.1"), ("addr", "127.0.0.1:99999"), ("realm", "ftp://x/v2/token"),
    ("realm", "/v2/token"), ("service", ""), ("issuer", 'a"b'), ("log_level", "loud"),
])
def test_bad_configuration_values_are_refused(tmp_path, field, value):
    with pytest.raises(ValueError):
        configuration.render(_spec(tmp_path, **{field: value}))


def test_the_configuration_file_and_http_secret_are_private(tmp_path):
    path = configuration.write(tmp_path / "config.yml", "version: 0.1\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = configuration.ensure_http_secret(tmp_path)
    assert configuration.ensure_http_secret(tmp_path) == first and len(first) >= 40
    assert stat.S_IMODE(os.stat(tmp_path / "http.secret").st_mode) == 0o600


# --------------------------------------------------------------------------- signing material

def test_the_signing_material_is_made_once_and_the_key_is_private(tmp_path):
    paths = signing.ensure_signing_material(tmp_path / "auth")
    assert stat.S_IMODE(os.stat(paths.key_path).st_mode) == 0o600
    key = paths.key_path.read_bytes()
    assert signing.ensure_signing_material(tmp_path / "auth").key_path.read_bytes() == key
    signing.Signer.load(paths)
    paths.cert_path.unlink()
    with pytest.raises(RuntimeError, match="must exist together"):
        signing.ensure_signing_material(tmp_path / "auth")


def test_a_certificate_of_another_key_is_refused(tmp_path):
    one = signing.ensure_signing_material(tmp_path / "one")
    two = signing.ensure_signing_material(tmp_path / "two")
    with pytest.raises(ValueError, match="does not certify"):
        signing.Signer.load(signing.SigningMaterial(one.key_path, two.cert_path))


# --------------------------------------------------------------------------- the real registry

def test_the_registry_challenges_for_a_token(registry):
    resp = requests.get(f"{registry['url']}/v2/", timeout=10)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == (
        f'Bearer realm="{registry["realm"]}",service="{registry["service"]}"')


def test_the_client_lists_describes_and_deletes_images(registry, signer):
    repository = f"minisante/api-{secrets.token_hex(3)}"
    digest, size = push_image(registry, signer, repository, "1.0")

    def token_for(scope: str) -> str:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        return _token(registry, signer, [{"type": kind, "name": name,
                                          "actions": actions.split(",")}])

    with RegistryClient(registry["url"], token_for) as api:
        assert api.ping() == 401
        assert repository in api.catalog(page_size=1)  # pages are followed
        assert api.tags(repository) == ["1.0"]
        assert api.tags("minisante/never-pushed") == []
        info = api.manifest(repository, "1.0")
        assert (info.digest, info.size, info.media_type) == (digest, size, MANIFEST_V2)
        assert api.manifest(repository, digest).digest == digest
        api.delete(repository, digest)
        assert api.tags(repository) == []
        with pytest.raises(RegistryError) as err:
            api.manifest(repository, "1.0")
        assert err.value.status == 404
        with pytest.raises(ValueError):
            api.delete(repository, "1.0")  # by digest only
        with pytest.raises(ValueError):
            api.tags("../etc")


def test_the_registry_grants_only_what_the_token_lists(registry, signer):
    repository = f"minisante/scoped-{secrets.token_hex(3)}"
    push_image(registry, signer, repository, "1")
    pull_only = _token(registry, signer, _repo_access(repository, "pull"))
    api = RegistryClient(registry["url"], pull_only)
    assert api.tags(repository) == ["1"]
    resp = requests.post(f"{registry['url']}/v2/{repository}/blobs/uploads/", timeout=10,
                         headers={"Authorization": f"Bearer {pull_only}"})
    assert resp.status_code == 401
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    with pytest.raises(RegistryError) as err:  # no delete action in the token
        api.delete(repository, api.manifest(repository, "1").digest)
    assert err.value.status == 401
    with pytest.raises(RegistryError) as err:
        RegistryClient(registry["url"], pull_only).tags("obr/other")
    assert err.value.status == 401


@pytest.mark.parametrize("what", ["issuer", "audience", "expired", "not yet", "untrusted key"])
def test_the_registry_refuses_tokens_it_must_not_trust(registry, signer, tmp_path, what):
    repository = "minisante/anything"
    access = _repo_access(repository, "pull")
    if what == "issuer":
        token = _token(registry, signer, access, issuer="someone-else")
    elif what == "audience":
        token = _token(registry, signer, access, audience="another-registry")
    elif what == "expired":
        token = _token(registry, signer, access, ttl=1, now=time.time() - 3600)
    elif what == "not yet":
        token = _token(registry, signer, access, now=time.time() + 3600)
    else:
        other = signing.Signer.load(signing.ensure_signing_material(tmp_path / "other"))
        token = _token(registry, other, access)
    resp = requests.get(f"{registry['url']}/v2/{repository}/tags/list", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


def test_start_registry_says_when_the_binary_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(devstack, "REGISTRY_BINARY", "no-such-registry-binary")
    with pytest.raises(RuntimeError, match="apt-get install docker-registry"):
        devstack.start_registry(tmp_path, devstack.free_port(), realm="http://x/v2/token",
                                service="s", issuer="i")
