"""The portal wired to the session's registry, served on the registry's realm port so the real
Docker Engine can fetch tokens from it; the Docker CLI with its own configuration folder; a
tiny image; every tag made is removed."""
from __future__ import annotations

import io
import os
import secrets
import subprocess
import tarfile
import threading

import pytest
from werkzeug.serving import make_server

DOCKER_TIMEOUT = 120


@pytest.fixture
def registry_app(app, registry):
    app.config.update(registry["settings"])
    return app


@pytest.fixture
def token_server(registry_app, registry):
    """The portal (this test's app and database) on 127.0.0.1:<token_port>, in a thread."""
    server = make_server("127.0.0.1", registry["token_port"], registry_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="token-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{registry['token_port']}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class DockerCLI:
    """The real `docker` command with a private configuration folder (its logins stay there)
    and a record of every image tag it made, removed at the end."""

    def __init__(self, config_dir, registry_address: str) -> None:
        self.env = {**os.environ, "DOCKER_CONFIG": str(config_dir)}
        self.registry = registry_address
        self.tags: list[str] = []

    def run(self, *args: str, input: bytes | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], input=input, env=self.env,
                                capture_output=True, timeout=DOCKER_TIMEOUT)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: "
                                 f"{result.stderr.decode(errors='replace')}")
        return result

    def login(self, user: str, password: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("login", self.registry, "--username", user, "--password-stdin",
                        input=password.encode(), check=check)

    def logout(self) -> None:
        self.run("logout", self.registry, check=False)

    def tag(self, source: str, repository: str) -> str:
        """Tag `source` as <registry>/<repository> and remember the tag."""
        target = f"{self.registry}/{repository}"
        self.run("tag", source, target)
        self.tags.append(target)
        return target

    def push(self, ref: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("push", ref, check=check)

    def pull(self, ref: str, check: bool = True) -> subprocess.CompletedProcess:
        result = self.run("pull", ref, check=check)
        if ref not in self.tags:
            self.tags.append(ref)
        return result

    def untag(self, ref: str) -> None:
        self.run("image", "rm", ref, check=False)

    def cleanup(self) -> None:
        self.logout()
        for ref in reversed(self.tags):
            self.untag(ref)


@pytest.fixture(scope="session")
def tiny_image(docker_client, docker_prefix):
    """A one-file image made with `docker import` (no registry needed), removed at the end."""
    data = f"comgov registry test {secrets.token_hex(8)}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    ref = f"{docker_prefix}-registry-tiny:1"
    subprocess.run(["docker", "import", "-", ref], input=buf.getvalue(), check=True,
                   capture_output=True, timeout=DOCKER_TIMEOUT)
    yield ref
    subprocess.run(["docker", "image", "rm", "--force", ref], capture_output=True,
                   timeout=DOCKER_TIMEOUT)


@pytest.fixture
def docker_cli(tmp_path, registry, docker_client):
    cli = DockerCLI(tmp_path / "docker-config", registry["address"])
    yield cli
    cli.cleanup()
