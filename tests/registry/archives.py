"""`docker save`-style archives for the image import tests: real ones from the engine, and
crafted ones (a layer bomb, the `d -> .` second-manifest trick) built with tarfile."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import docker.errors

DOCKER_TIMEOUT = 120
END_OF_TAR = bytes(1024)


def build_tiny(client, ref: str, text: str) -> str:
    """A few-byte image FROM scratch, tagged `ref`, built locally (no registry); its id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY hello.txt /hello.txt\n"),
                           ("hello.txt", text.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _ = client.images.build(fileobj=buf, custom_context=True, tag=ref, rm=True)
    return image.id


def docker_save(ref: str, path: Path) -> Path:
    """The real `docker save -o path ref`."""
    subprocess.run(["docker", "save", "-o", str(path), ref], check=True, capture_output=True,
                   timeout=DOCKER_TIMEOUT)
    return path


def remove_image(client, ref: str) -> None:
    try:
        client.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass


def image_exists(client, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def tar_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zero_bomb(unpacked: int, compress=gzip.compress) -> bytes:
    """A layer: a tar holding one file of `unpacked` zero bytes, compressed (gzip by default:
    streamed, so building it never holds the unpacked bytes)."""
    info = tarfile.TarInfo("zeros")
    info.size = unpacked
    if compress is not gzip.compress:
        return compress(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(unpacked) + END_OF_TAR)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
        chunk = bytes(1 << 20)
        left = unpacked
        while left > 0:
            gz.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)
        gz.write(END_OF_TAR)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
         link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_archive(path: Path, layers: list[bytes], tags: list[str] | None,
                  extra: list[tuple[str, bytes, bytes, str]] = ()) -> tuple[Path, str]:
    """An archive laid out as `docker save` (20.10) writes it; (path, image id).

    `extra` members (name, data, tar type, link target) follow the regular ones.
    """
    diff_ids = []
    for layer in layers:
        raw = layer
        if layer[:2] == b"\x1f\x8b":
            raw = b""  # the diff id of a compressed layer is not worth computing here
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux", "created":
                         "2026-01-02T03:04:05Z", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    names = [f"{hashlib.sha256(layer).hexdigest()}/layer.tar" for layer in layers]
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": tags, "Layers": names}]
    with tarfile.open(path, "w") as tar:
        _add(tar, f"{config_hex}.json", config)
        for name, layer in zip(names, layers):
            _add(tar, name.split("/")[0], kind=tarfile.DIRTYPE)
            _add(tar, name, layer)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        for name, data, kind, link in extra:
            _add(tar, name, data, kind, link)
    return path, f"sha256:{config_hex}"


def manifest_of(path: Path) -> list[dict]:
    with tarfile.open(path) as tar:
        return json.loads(tar.extractfile("manifest.json").read())


def hostile(src: Path, dst: Path, claimed: str = "comgov/base:bookworm") -> Path:
    """The issue's archive: a real `docker save` tar, then a symlink `d -> .` and a second
    `d/manifest.json` claiming `claimed` for the same image, plus a second entry that fails
    (its config is missing), so an engine that unpacks the tar would tag the image `claimed`
    and raise before cleaning up."""
    entry = manifest_of(src)[0]
    second = [{**entry, "RepoTags": [claimed]},
              {**entry, "Config": "missing.json", "RepoTags": ["comgov/nginx:bookworm"]}]
    with tarfile.open(src) as old, tarfile.open(dst, "w") as new:
        for member in old:
            new.addfile(member, old.extractfile(member) if member.isfile() else None)
        _add(new, "d", kind=tarfile.SYMTYPE, link=".")
        _add(new, "d/manifest.json", json.dumps(second).encode())
    return dst
