"""Images into the registry: the portal's upload path against skopeo by hand, and docker push
through the token auth against a push to the same registry software with auth off.

Ours (1): an application image archive (`docker save`, 200 MiB of fresh random data by default)
goes through the portal's path: `image_uploads.accept` (stored, read as a plain tar, quota
checked) then the import job (every layer re-read and its unpacked size bounded, then `skopeo
copy` with a push token into the institution's namespace, in a size-limited scratch folder).
Baseline (1): `skopeo copy docker-archive:… docker://…` of an archive of the same size, run by
hand with a token, into the same registry.

Ours (2): `docker push` to the platform's registry with token authentication (dockerd fetches a
token from the portal's /v2/token at each push). Baseline (2): `docker push` of the same image
to a second registry of the same software and version with no authentication.

Every round uses fresh images (no blob is already in a registry); the order of ours and the
baseline alternates. Target: ours / baseline <= 1.3 for each.

    .venv/bin/python bench/images.py --rounds 3 --mib 200
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from harness import platform

BASE_IMAGE = "comgov/base:bookworm"


def build_image(tag: str, mib: int, workdir: Path) -> None:
    """A fresh image: the platform's base plus `mib` MiB of random data (nothing shared)."""
    context = workdir / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nRUN head -c {mib}M /dev/urandom > /blob && echo {tag} > /tag\n")
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True,
                   capture_output=True)


def docker_save(tag: str, path: Path) -> None:
    subprocess.run(["docker", "save", "-o", str(path), tag], check=True, capture_output=True)


def start_open_registry(workdir: Path, port: int) -> subprocess.Popen:
    """The same registry software with no authentication at all (the baseline's registry)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench-{os.getpid()}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the open registry did not start")


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def ratio_line(name: str, ours: list[float], base: list[float]) -> str:
    o, b = statistics.median(ours), statistics.median(base)
    return (f"{name}: ours median {o:.2f} s (min {min(ours):.2f}) vs baseline median {b:.2f} s "
            f"(min {min(base):.2f}) -> ratio {o / b:.2f} (target <= 1.30)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args()

    from werkzeug.serving import make_server

    from controlplane.kinds.application import image_uploads
    from devtools import devstack

    upload_ours, upload_base, push_ours, push_base = [], [], [], []
    made: list[str] = []
    with platform() as h:
        work = h.work / "images"
        work.mkdir()
        reg_port, token_port, open_port = (devstack.free_port() for _ in range(3))
        realm = f"http://127.0.0.1:{token_port}/v2/token"
        registry = devstack.start_registry(work / "registry", reg_port, realm=realm,
                                           service="bench-registry", issuer="bench-controlplane",
                                           log_level="warn")
        open_registry = start_open_registry(work / "open-registry", open_port)
        address, open_address = f"127.0.0.1:{reg_port}", f"127.0.0.1:{open_port}"
        platform_password = "bench-" + os.urandom(12).hex()
        h.app.config.update(
            REGISTRY_ADDRESS=address, REGISTRY_ROOT=str(work / "registry"),
            REGISTRY_TOKEN_REALM=realm, REGISTRY_SERVICE="bench-registry",
            REGISTRY_ISSUER="bench-controlplane", REGISTRY_PLATFORM_PASSWORD=platform_password,
            RQ_QUEUE="bench-images",  # the harness's worker does not take these jobs: we time them
            RATELIMIT_REGISTRY_TOKEN="10000 per minute")
        server = make_server("127.0.0.1", token_port, h.app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        docker_config = Path(tempfile.mkdtemp(prefix="bench-docker-"))
        env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
        subprocess.run(["docker", "login", address, "-u", h.app.config["REGISTRY_PLATFORM_USER"],
                        "--password-stdin"], input=platform_password.encode(), env=env,
                       check=True, capture_output=True)
        try:
            for n in range(args.rounds):
                # --- (1) archives: ours through the portal path, baseline skopeo by hand
                ours_tag, base_tag = f"bench-up-{n}-a:1", f"bench-up-{n}-b:1"
                for tag in (ours_tag, base_tag):
                    build_image(tag, args.mib, work)
                    made.append(tag)
                ours_tar, base_tar = work / "ours.tar", work / "base.tar"
                docker_save(ours_tag, ours_tar)
                docker_save(base_tag, base_tar)

                def ours_upload():
                    with open(ours_tar, "rb") as stream, h.app.test_request_context():
                        task = image_uploads.accept(h.focal_point, stream, "ours.tar",
                                                    name=f"up{n}:1")
                    assert image_uploads.import_archive(task.id) == "done", task.message

                def base_upload():
                    token = image_uploads._push_token(f"bench/base{n}")
                    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                    "--dest-registry-token", token, f"docker-archive:{base_tar}",
                                    f"docker://{address}/bench/base{n}:1"],
                                   check=True, capture_output=True)

                order = (ours_upload, base_upload) if n % 2 == 0 else (base_upload, ours_upload)
                for fn in order:
                    (upload_ours if fn is ours_upload else upload_base).append(timed(fn))
                ours_tar.unlink()
                base_tar.unlink()

                # --- (2) docker push: token auth against no auth, the same fresh image
                push_tag = f"bench-push-{n}:1"
                build_image(push_tag, args.mib, work)
                made.append(push_tag)
                authed, opened = f"{address}/comgov/bench{n}:1", f"{open_address}/bench{n}:1"
                for ref in (authed, opened):
                    subprocess.run(["docker", "tag", push_tag, ref], check=True)
                    made.append(ref)

                def push(ref):
                    return lambda: subprocess.run(["docker", "push", ref], env=env, check=True,
                                                  capture_output=True)

                order = ((authed, push_ours), (opened, push_base))
                for ref, out in (order if n % 2 == 0 else order[::-1]):
                    out.append(timed(push(ref)))
                print(f"round {n + 1}: upload ours {upload_ours[-1]:.2f} s, skopeo "
                      f"{upload_base[-1]:.2f} s; push with token {push_ours[-1]:.2f} s, "
                      f"without {push_base[-1]:.2f} s", flush=True)
        finally:
            subprocess.run(["docker", "image", "rm", *made], capture_output=True)
            server.shutdown()
            devstack.stop_process(registry)
            devstack.stop_process(open_registry)
            shutil.rmtree(docker_config, ignore_errors=True)
    print(ratio_line(f"upload {args.mib} MiB archive -> registry", upload_ours, upload_base))
    print(ratio_line(f"docker push {args.mib} MiB", push_ours, push_base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
