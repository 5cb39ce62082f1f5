"""Build the platform's Docker images locally, since no registry can be reached.

Usage::

    client = docker.from_env()
    ensure_images(client, Path("instance/build"))   # base, then provisioners/images/*/

The base image comes from debootstrap + ``docker import``; every other image is
``provisioners/images/<name>/`` built as ``comgov/<name>:bookworm``. Images carry
their name and a hash of their build inputs as labels, so an unchanged directory is
reused instantly and a changed one (or a rebuilt base) is rebuilt.

A tag found on the engine is never taken on its word: the image must carry the
platform's labels with the current hash (the base: also one layer, the recipe's
command) and, when a record is given (``pins.Record``, ``instance/images.json``),
the recorded id. Otherwise it is rebuilt, and the log says why
(``event=image.untrusted``). The record then holds what was built, for
``pins.resolve`` and ``pins.push_images``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors

from provisioners.images import pins

log = logging.getLogger(__name__)

BASE_IMAGE = "comgov/base:bookworm"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
IMAGES_DIR = Path(__file__).resolve().parent
HASH_LABEL = pins.HASH_LABEL
IMAGE_LABEL = pins.IMAGE_LABEL
# What `docker import` sets on the debootstrap tree; with SUITE and the variant, the base's hash.
BASE_CMD = ["/bin/bash"]
BASE_CHANGES = ['CMD ["/bin/bash"]',
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
VARIANT = "minbase"
LOG_TAIL = 40
_ID_RE = re.compile(r"sha256:[0-9a-f]{64}")
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.IGNORECASE | re.MULTILINE)


def image_tag(name: str) -> str:
    """Tag of the image built from provisioners/images/<name>/."""
    return f"comgov/{name}:{SUITE}"


def _existing_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


# --- base image ------------------------------------------------------------

def base_hash() -> str:
    """The base's build inputs (suite, variant, what the import sets), as its HASH_LABEL."""
    recipe = {"suite": SUITE, "variant": VARIANT, "changes": BASE_CHANGES}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _record(record: pins.Record | Path | str | None) -> pins.Record:
    return record if isinstance(record, pins.Record) else pins.Record.load(record)


def _found(client: docker.DockerClient, tag: str):
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def ensure_base_image(client: docker.DockerClient, workdir: Path, *, tag: str = BASE_IMAGE,
                      record: pins.Record | Path | str | None = None) -> str:
    """Return the base image id, creating it with debootstrap if it is missing or is not the
    platform's (labels, one layer, the recorded id when `record` has one) (~1 min)."""
    record = _record(record)
    wanted = base_hash()
    image = _found(client, tag)
    if image is not None:
        problem = pins.base_problem(image, wanted, BASE_CMD) or \
            pins.id_problem(image.id, record.get(tag))
        if problem is None:
            log.info("event=image.reuse image=%s id=%s", tag, image.id[:19])
            record.built(tag, "base", image.id, wanted)
            return image.id
        log.warning("event=image.untrusted image=%s id=%s reason=%r action=rebuild", tag,
                    image.id[:19], problem)
    image_id = _debootstrap_import(client, Path(workdir), tag, wanted)
    if image is not None and image.id != image_id:
        _drop(client, image.id)
    record.built(tag, "base", image_id, wanted)
    log.info("event=image.built image=%s id=%s", tag, image_id[:19])
    return image_id


def _debootstrap_import(client: docker.DockerClient, workdir: Path, tag: str,
                        content_hash: str) -> str:
    """debootstrap a minimal tree and import it as `tag` with the platform's labels."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = workdir / "rootfs"
    _remove_rootfs(rootfs)  # a leftover from an interrupted run would confuse debootstrap
    mirror = os.environ.get("DEBIAN_MIRROR") or DEFAULT_MIRROR
    log_path = workdir / "debootstrap.log"
    log.info("event=image.debootstrap image=%s mirror=%s log=%s", tag, mirror, log_path)
    try:
        with open(log_path, "wb") as out:
            result = subprocess.run(
                ["debootstrap", f"--variant={VARIANT}", SUITE, str(rootfs), mirror],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"debootstrap failed with code {result.returncode}; log tail "
                f"({log_path}):\n{_file_tail(log_path)}"
            )
        return _import_rootfs(client, rootfs, tag, {HASH_LABEL: content_hash,
                                                    IMAGE_LABEL: "base"})
    finally:
        _remove_rootfs(rootfs)


def _import_rootfs(client: docker.DockerClient, rootfs: Path, tag: str,
                   labels: dict[str, str]) -> str:
    """Stream `tar -C rootfs -c .` into the engine's import endpoint (no temporary tarball)."""
    repository, _, version = tag.rpartition(":")
    tar = subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )

    def chunks() -> Iterator[bytes]:
        while chunk := tar.stdout.read(1 << 20):
            yield chunk

    try:
        result = client.api.import_image_from_stream(
            chunks(), repository=repository, tag=version,
            changes=BASE_CHANGES + [f"LABEL {k}={v}" for k, v in sorted(labels.items())],
        )
    except docker.errors.APIError as exc:
        tar.kill()
        raise RuntimeError(f"docker import of {tag} failed: {exc}") from exc
    finally:
        tar.stdout.close()
        stderr = tar.stderr.read().decode(errors="replace")
        tar.stderr.close()
        tar.wait()
    if tar.returncode != 0:
        raise RuntimeError(f"tar of {rootfs} failed with code {tar.returncode}: {stderr[-2000:]}")
    if '"error' in str(result):
        raise RuntimeError(f"docker import of {tag} failed: {str(result)[-2000:]}")
    found = _ID_RE.findall(str(result))
    image_id = _existing_id(client, tag)
    if image_id is None or not found or found[-1] != image_id:
        raise RuntimeError(f"docker import reported {found[-1:] or 'no id'} but {tag} is "
                           f"{image_id}: {str(result)[-2000:]}")
    return image_id


def _remove_rootfs(rootfs: Path) -> None:
    """Delete a debootstrap tree, unmounting anything an interrupted run left mounted in it."""
    if not rootfs.exists():
        return
    prefix = str(rootfs) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        mounts = [line.split()[1] for line in fh]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(rootfs)


# --- images built from provisioners/images/<name>/ ---------------------------

def context_hash(client: docker.DockerClient, directory: Path) -> str:
    """Hash the build inputs: every file (path and bytes) plus the ids of local FROM images."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    dockerfile = (directory / "Dockerfile").read_text(encoding="utf-8")
    for ref in _FROM_RE.findall(dockerfile):
        digest.update(f"FROM {ref}={_existing_id(client, ref) or ''}\n".encode())
    return digest.hexdigest()


def ensure_image(client: docker.DockerClient, name: str, *, directory: Path | None = None,
                 tag: str | None = None,
                 record: pins.Record | Path | str | None = None) -> str:
    """Return the id of comgov/<name>:bookworm, building it only if its inputs changed or the
    image under the tag is not the platform's (labels, the recorded id when `record` has one).

    `directory` and `tag` default to provisioners/images/<name>/ and image_tag(name)."""
    record = _record(record)
    directory = Path(directory) if directory is not None else IMAGES_DIR / name
    if not (directory / "Dockerfile").is_file():
        raise RuntimeError(f"no Dockerfile in {directory}")
    tag = tag or image_tag(name)
    wanted = context_hash(client, directory)
    image = _found(client, tag)
    if image is not None:
        problem = pins.label_problem(image, name, wanted)
        if problem is None:
            problem = pins.id_problem(image.id, record.get(tag))
            if problem is None:
                log.info("event=image.reuse image=%s id=%s", tag, image.id[:19])
                record.built(tag, name, image.id, wanted)
                return image.id
        if image.labels.get(IMAGE_LABEL) == name and \
                image.labels.get(HASH_LABEL) not in (None, wanted):
            log.info("event=image.build image=%s reason=%r", tag, "its build inputs changed")
        else:
            log.warning("event=image.untrusted image=%s id=%s reason=%r action=rebuild", tag,
                        image.id[:19], problem)
    log.info("event=image.build image=%s context=%s", tag, directory)
    image_id = _build(client, directory, tag, {HASH_LABEL: wanted, IMAGE_LABEL: name})
    if image is not None and image.id != image_id:
        _drop(client, image.id)
    record.built(tag, name, image_id, wanted)
    log.info("event=image.built image=%s id=%s", tag, image_id[:19])
    return image_id


def _drop(client: docker.DockerClient, image_id: str) -> None:
    """The image the tag left: drop it if nothing names it any more (no tag; a container using
    it makes the engine refuse). A foreign image keeps its other tags, for whoever looks."""
    try:
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)
    except docker.errors.APIError:
        pass


def _build(client: docker.DockerClient, directory: Path, tag: str, labels: dict[str, str]) -> str:
    """Build with the low-level API so the log can be kept for the error message."""
    tail: deque[str] = deque(maxlen=LOG_TAIL)
    image_id = None
    try:
        for chunk in client.api.build(
            path=str(directory), tag=tag, labels=labels, rm=True, forcerm=True,
            pull=False, decode=True, timeout=None,
        ):
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        tail.append(line)
                        log.debug("event=image.build.log image=%s line=%r", tag, line)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or chunk["errorDetail"].get("message", "")
                tail.append(f"ERROR: {message}")
                raise RuntimeError(f"building {tag} failed:\n" + "\n".join(tail))
    except docker.errors.APIError as exc:
        tail.append(f"ERROR: {exc}")
        raise RuntimeError(f"building {tag} failed:\n" + "\n".join(tail)) from exc
    image_id = image_id or _existing_id(client, tag)
    if image_id is None:
        raise RuntimeError(f"building {tag} produced no image:\n" + "\n".join(tail))
    return image_id


def image_names() -> list[str]:
    """Names of the directories under provisioners/images/ that hold a Dockerfile."""
    if not IMAGES_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile"))


def ensure_images(client: docker.DockerClient, workdir: Path,
                  record: pins.Record | Path | str | None = None) -> list[str]:
    """Ensure the base image, then every image directory; return their ids in that order.
    With `record` (a path or a pins.Record), found images must match it and it is updated."""
    record = _record(record)
    ids = [ensure_base_image(client, workdir, record=record)]
    ids += [ensure_image(client, name, record=record) for name in image_names()]
    return ids


def _file_tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
