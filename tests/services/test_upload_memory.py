"""Site archives do not exhaust memory (issue 9, item 8).

A 50 MiB upload that unpacks to over 4 GiB goes through the portal and the deploy job, each run
in a process of its own (spawned, so nothing is shared with pytest) whose peak resident memory
is compared with its idle size measured just before. Real Redis, slapd and Docker Engine.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import secrets
import struct
import tarfile
import time
import traceback
import zlib
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import select

from controlplane.app import create_app
from controlplane.core.extensions import db
from controlplane.core.factory import make_app
from controlplane.core.models import ContentUpload, Service
from controlplane.services import content, jobs
from controlplane.worker import runner
from tests.conftest import AuthActions, csrf_token, run_worker

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MIB = 1024 * 1024
GIB = 1024 * MIB
MEMORY_LIMIT = 100 * MIB  # above the process's idle size
SIZE = "M"  # 1024 MiB of disk: the job unpacks 1 GiB of the bomb before refusing it
CHILD_TIMEOUT = 120


# ------------------------------------------------------------------------ archives

def _deflated(data: bytes) -> bytes:
    """Raw deflate of `data` alone, ending on a byte boundary: valid anywhere in a stream."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


def write_tar_gz(path: Path, files: list[tuple[str, int, str]]) -> int:
    """Write a .tar.gz of `files` (name, size, "zeros" | "random" | text) as one gzip stream,
    a chunk at a time; returns the unpacked size. A chunk of zeros is deflated once and its
    bytes repeated (each copy refers only to its own zeros), so gigabytes take seconds."""
    zeros = bytes(64 * MIB)
    deflated_zeros = _deflated(zeros)
    crc = unpacked = 0
    with open(path, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header, no name

        def put(data: bytes, deflated: bytes | None = None) -> None:
            nonlocal crc, unpacked
            crc = zlib.crc32(data, crc)
            unpacked += len(data)
            out.write(deflated if deflated is not None else _deflated(data))

        for name, size, fill in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, int(time.time())
            put(info.tobuf(tarfile.PAX_FORMAT))
            left = size
            if fill not in ("zeros", "random"):
                put(fill.encode())
                left = 0
            while left:
                step = min(left, len(zeros))
                if fill == "zeros" and step == len(zeros):
                    put(zeros, deflated_zeros)
                elif fill == "zeros":
                    put(zeros[:step])
                else:
                    put(os.urandom(step))
                left -= step
            put(tarfile.NUL * (-size % tarfile.BLOCKSIZE))
        put(tarfile.NUL * 2 * tarfile.BLOCKSIZE)
        out.write(zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush())  # final block
        out.write(struct.pack("<II", crc, unpacked & 0xFFFFFFFF))
    return unpacked


def site_archive(html: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("index.html", html.encode()), ("css/site.css", b"body{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ------------------------------------------------------------------------ memory

def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _idle() -> int:
    """Resident size now, in bytes; the peak is reset to it (Linux: clear_refs 5). Where that
    is refused the peak stays the highest since start, which only makes the test stricter."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_kib("VmRSS") * 1024


def _peak() -> int:
    return _status_kib("VmHWM") * 1024


def _in_child(target, *args) -> dict:
    """Run `target(*args, send)` in a spawned process; what it sent, or its traceback."""
    ctx = multiprocessing.get_context("spawn")
    receiving, sending = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_guarded, args=(target, sending, *args))
    process.start()
    sending.close()
    try:
        if not receiving.poll(CHILD_TIMEOUT):
            raise AssertionError(f"{target.__name__} sent nothing in {CHILD_TIMEOUT} s")
        result = receiving.recv()
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
    assert "traceback" not in result, result["traceback"]
    return result


def _guarded(target, sending, *args) -> None:
    try:
        sending.send(target(*args))
    except BaseException:  # noqa: BLE001 - shown by the test in the parent
        sending.send({"traceback": traceback.format_exc()})


def web_side(config: dict, instance: str, service_id: int, archive: str) -> dict:
    """The portal: log in, open the page, then upload `archive` (measured)."""
    os.environ["CONTROLPLANE_INSTANCE"] = instance
    app = create_app(config)
    client = app.test_client()
    AuthActions(client).login("fp.sante")
    page = f"/services/{service_id}"
    token = csrf_token(client, page)
    idle = _idle()
    with open(archive, "rb") as fh:
        response = client.post(f"/services/{service_id}/content",
                               data={"archive": (fh, "site.tar.gz"), "csrf_token": token},
                               content_type="multipart/form-data")
    peak = _peak()
    return {"idle": idle, "peak": peak, "status": response.status_code,
            "page": client.get(page).get_data(as_text=True)}


def worker_side(config: dict, instance: str) -> dict:
    """A worker as `controlplane worker` runs one (SimpleWorker), until the queue is empty."""
    os.environ["CONTROLPLANE_INSTANCE"] = instance
    app = make_app(config)
    runner.set_app(app)
    connection = Redis.from_url(config["REDIS_URL"])
    worker = SimpleWorker([Queue(config["RQ_QUEUE"], connection=connection)],
                          connection=connection)
    idle = _idle()
    worker.work(burst=True)
    return {"idle": idle, "peak": _peak()}


# ------------------------------------------------------------------------ the site

def request_and_approve(auth, hostname: str, size: str = SIZE) -> int:
    auth.login("fp.sante")
    response = auth.post("/portal/requests/new/website", {"hostname": hostname, "size": size},
                         page="/portal/requests/new/website")
    assert response.status_code == 302, response.get_data(as_text=True)
    request_id = int(response.headers["Location"].rsplit("/", 1)[1])
    auth.logout()
    auth.login("op.one")
    response = auth.post(f"/ops/requests/{request_id}/approve", page=f"/requests/{request_id}")
    service_id = int(response.headers["Location"].rsplit("/", 1)[1])
    auth.logout()
    return service_id


def fetch(port: int, host: str, path: str = "/", expect: str = "", timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host},
                                timeout=3)
            if last.status_code == 200 and expect in last.text:
                return last
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{host}{path} never answered 200 with {expect!r}: "
                         f"{last.status_code if last is not None else 'no answer'}")


@pytest.fixture
def site(docker_app, client, auth, proxy_port, docker_client, docker_prefix):
    """A running website of size SIZE with first content, deployed the usual way."""
    app = docker_app
    hostname = f"memory-{secrets.token_hex(3)}.minisante.gov.bi"
    service_id = request_and_approve(auth, hostname)
    run_worker(app)
    auth.login("fp.sante")
    response = auth.post(f"/services/{service_id}/content",
                         {"archive": (io.BytesIO(site_archive("<h1>Premier contenu</h1>")),
                                      "site.tar.gz")},
                         page=f"/services/{service_id}", content_type="multipart/form-data")
    assert response.status_code == 302
    run_worker(app)
    fetch(proxy_port, hostname, expect="Premier contenu")
    config = {key: app.config[key] for key in (
        "TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "REDIS_URL", "RQ_QUEUE", "LDAP_URL",
        "LDAP_BASE_DN", "LDAP_ADMIN_DN", "LDAP_ADMIN_PASSWORD", "RATELIMIT_LOGIN",
        "RATELIMIT_STORAGE_URI", "DOCKER_PREFIX", "PROXY_PORT", "DOCKER_EXTRA_LABELS")}
    yield {"id": service_id, "hostname": hostname, "config": config,
           "instance": app.instance_path,
           "container": docker_client.containers.get(f"{docker_prefix}-web-{service_id}")}
    with app.app_context():
        jobs.run_service_action(service_id, "delete")


def site_files(container) -> dict[str, int]:
    code, output = container.exec_run(["find", "/srv/site", "-type", "f", "-printf", "%P %s\n"])
    assert code == 0, output
    return {name: int(size) for name, size in (line.rsplit(" ", 1)
                                                for line in output.decode().splitlines())}


def deploy_helpers_created(docker_client, service_id: int, since: float) -> list[str]:
    events = docker_client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                                  filters={"type": "container", "event": "create",
                                           "label": [f"bi.gov.comgov.service={service_id}",
                                                     "bi.gov.comgov.kind=deploy"]})
    return [e["Actor"]["Attributes"].get("name", "") for e in events]


# ------------------------------------------------------------------------ tests

def test_archive_bomb_is_refused_by_the_worker_with_bounded_memory(docker_app, site, tmp_path,
                                                                    docker_client, proxy_port):
    app = docker_app
    bomb = tmp_path / "bomb.tar.gz"
    # Photos first (random, so the archive weighs ~50 MiB), then 16 files of 256 MiB of zeros.
    unpacked = write_tar_gz(bomb, [("photos.bin", 44 * MIB, "random")] +
                            [(f"data/zeros-{i:02}.bin", 256 * MIB, "zeros") for i in range(16)])
    assert 45 * MIB < bomb.stat().st_size <= app.config["UPLOAD_MAX_BYTES"]
    assert unpacked > 4 * GIB
    with tarfile.open(bomb) as tar:  # a well-formed archive: only its size is wrong
        assert tar.next().name == "photos.bin" and tar.next().size == 256 * MIB
    with app.app_context():
        before = db.session.get(Service, site["id"]).content_deployed_at

    web = _in_child(web_side, site["config"], site["instance"], site["id"], str(bomb))
    assert web["status"] == 302
    assert "Archive reçue" in web["page"]  # the quick look found nothing to say
    with app.app_context():
        upload = db.session.scalars(select(ContentUpload).order_by(ContentUpload.id.desc())).first()
        assert upload.status == "pending" and upload.filename == "site.tar.gz"
        assert content.upload_path(upload).stat().st_size == bomb.stat().st_size

    started = time.time()
    worker = _in_child(worker_side, site["config"], site["instance"])

    with app.app_context():
        upload = db.session.get(ContentUpload, upload.id)
        assert upload.status == "failed"
        assert "dépasse l’espace disque alloué au site (1024 Mio)" in upload.error
        assert db.session.get(Service, site["id"]).content_deployed_at == before
        folder = content.upload_folder(site["id"])
    assert list(folder.iterdir()) == []  # neither the upload nor a clean tar is left
    assert deploy_helpers_created(docker_client, site["id"], started) == []
    assert site_files(site["container"]) == {"index.html": 24, "css/site.css": 6}
    fetch(proxy_port, site["hostname"], expect="Premier contenu")

    web_delta, worker_delta = web["peak"] - web["idle"], worker["peak"] - worker["idle"]
    print(f"\npeak above idle: portal {web_delta / MIB:.1f} MiB (idle {web['idle'] / MIB:.0f}),"
          f" worker {worker_delta / MIB:.1f} MiB (idle {worker['idle'] / MIB:.0f})")
    assert web_delta < MEMORY_LIMIT
    assert worker_delta < MEMORY_LIMIT


def test_large_archive_that_fits_is_deployed_with_bounded_memory(docker_app, site, tmp_path,
                                                                 proxy_port):
    app = docker_app
    archive = tmp_path / "large.tar.gz"
    files = [("index.html", 22, "<h1>Grand contenu</h1>"),
             ("media/photos.bin", 40 * MIB, "random"),
             ("media/video.bin", 200 * MIB, "zeros")]
    unpacked = write_tar_gz(archive, files)
    assert unpacked > 2 * MEMORY_LIMIT

    web = _in_child(web_side, site["config"], site["instance"], site["id"], str(archive))
    assert web["status"] == 302
    worker = _in_child(worker_side, site["config"], site["instance"])

    with app.app_context():
        upload = db.session.scalars(select(ContentUpload).order_by(ContentUpload.id.desc())).first()
        assert (upload.status, upload.error) == ("deployed", None)
        assert (upload.files, upload.size_bytes) == (3, 22 + 240 * MIB)
        assert list(content.upload_folder(site["id"]).iterdir()) == []
    assert site_files(site["container"]) == {name: size for name, size, _fill in files}
    fetch(proxy_port, site["hostname"], expect="Grand contenu")
    page = fetch(proxy_port, site["hostname"], path="/media/photos.bin")
    assert len(page.content) == 40 * MIB

    web_delta, worker_delta = web["peak"] - web["idle"], worker["peak"] - worker["idle"]
    print(f"\npeak above idle: portal {web_delta / MIB:.1f} MiB (idle {web['idle'] / MIB:.0f}),"
          f" worker {worker_delta / MIB:.1f} MiB (idle {worker['idle'] / MIB:.0f})")
    assert web_delta < MEMORY_LIMIT
    assert worker_delta < MEMORY_LIMIT
