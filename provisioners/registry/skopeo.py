"""Images into and out of the registry without any engine: `skopeo copy` of a checked
`docker save` archive, a size-limited scratch folder for it, and what a namespace holds.

Importing (the engine never sees the archive)::

    with scratch_space(root / "scratch", 4 << 30) as tmp:
        digest = copy_archive(Path("/…/image-1a2b.tar"), "registry.dc.gov.bi/minisante/portail:1.0",
                              token=jwt_for_push_pull, tls_verify=True, tmpdir=tmp)

`skopeo` runs from an argument list (no shell) with a minimal environment: `TMPDIR`, `HOME` and
`XDG_RUNTIME_DIR` in the scratch folder (no credentials file of the host is read), its own
trust policy, and a bearer token given by the caller (`--dest-registry-token`): no password ever
reaches its command line.

Reading (the Images page, the quota)::

    images = namespace_images(client, "minisante")      # [StoredImage, …]
    stored_bytes(images)                                # layers and configs counted once
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from provisioners.docker import volumes
from provisioners.registry.api import (
    DIGEST_RE,
    MANIFEST_LIST,
    OCI_INDEX,
    TAG_RE,
    RegistryClient,
    RegistryError,
    check_repository,
)

log = logging.getLogger(__name__)

SKOPEO = "skopeo"
COPY_TIMEOUT = 1800  # seconds
MIN_SCRATCH = 64 * 1024 * 1024
MAX_CONFIG = 1024 * 1024  # an image configuration read for its date
MAX_CHILDREN = 32  # manifests of one list/index looked at
POLICY = {"default": [{"type": "insecureAcceptAnything"}]}  # a local archive has no signature
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9a-fA-F:]+\](?::[0-9]{1,5})?")
_LOOPBACK_HOSTS = {"localhost", "::1", "[::1]"}
_CONFIG_CACHE: OrderedDict[str, datetime | None] = OrderedDict()  # by digest: never changes
_CONFIG_CACHE_SIZE = 4096


class SkopeoError(RuntimeError):
    """skopeo (or the scratch folder it needs) failed; the message says why, token-free."""


# --- the scratch folder ----------------------------------------------------------------------
def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mkfs.ext4") is not None \
        and shutil.which("mount") is not None


@contextmanager
def scratch_space(root: Path, size_bytes: int, *, loop: bool | None = None) -> Iterator[Path]:
    """A private, empty folder that cannot hold more than `size_bytes`, removed afterwards.

    As root: a sparse file formatted ext4 (no journal, no reserved blocks) and loop-mounted
    `nodev,nosuid,noexec`, so whatever skopeo writes fails with ENOSPC at the limit instead of
    filling the host's disk; it costs no disk until written. Without the right to mount
    (`loop=False` or not root): a plain folder, allowed only when the host filesystem has
    `size_bytes` free.
    """
    root = Path(root)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    size_bytes = max(int(size_bytes), MIN_SCRATCH)
    use_loop = _can_mount() if loop is None else loop
    name = f"scratch-{secrets.token_hex(6)}"
    if not use_loop:
        free = shutil.disk_usage(root).free
        if free < size_bytes:
            raise SkopeoError(f"not enough free space for an image import: {free} bytes free "
                              f"under {root}, {size_bytes} needed")
        folder = Path(tempfile.mkdtemp(prefix=name + "-", dir=root))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    with volumes.temporary_filesystem(root / f"{name}.img", root / name, size_bytes) as mount:
        yield mount


# --- skopeo copy -----------------------------------------------------------------------------
def is_loopback(address: str) -> bool:
    """Whether a registry address (host[:port]) is this machine: TLS is not needed there."""
    host = address.rsplit(":", 1)[0] if not address.startswith("[") else \
        address.split("]", 1)[0] + "]"
    return host in _LOOPBACK_HOSTS or re.fullmatch(r"127(?:\.[0-9]{1,3}){3}", host) is not None


def check_destination(destination: str) -> tuple[str, str, str]:
    """`host[:port]/repository:tag` -> (address, repository, tag); ValueError otherwise."""
    address, sep, rest = destination.partition("/")
    repository, sep2, tag = rest.rpartition(":")
    if not (sep and sep2) or not _HOST_RE.fullmatch(address) or "/" not in repository \
            or not TAG_RE.fullmatch(tag):
        raise ValueError(f"invalid destination {destination!r}")
    check_repository(repository)
    return address, repository, tag


def copy_archive(archive: Path, destination: str, *, token: str, tls_verify: bool,
                 tmpdir: Path, timeout: float = COPY_TIMEOUT) -> str:
    """`skopeo copy docker-archive:<archive> docker://<destination>`; the pushed manifest's
    digest. The archive must hold one image (checked by the caller); the token must grant
    `push,pull` on the destination's repository, nothing more is needed."""
    archive = Path(archive).resolve()
    if ":" in str(archive) or not archive.is_file():
        raise ValueError(f"unusable archive path {archive}")  # `:` separates a reference
    check_destination(destination)
    tmpdir = Path(tmpdir)
    policy = tmpdir / "policy.json"
    policy.write_text(json.dumps(POLICY), encoding="utf-8")
    digest_file = tmpdir / "digest"
    argv = [SKOPEO, "--policy", str(policy), "--tmpdir", str(tmpdir), "copy",
            "--format", "v2s2", "--retry-times", "0", "--digestfile", str(digest_file),
            f"--dest-tls-verify={'true' if tls_verify else 'false'}",
            "--dest-registry-token", token,
            f"docker-archive:{archive}", f"docker://{destination}"]
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LC_ALL": "C",
           "TMPDIR": str(tmpdir), "HOME": str(tmpdir), "XDG_RUNTIME_DIR": str(tmpdir),
           "XDG_CONFIG_HOME": str(tmpdir), "REGISTRY_AUTH_FILE": str(tmpdir / "auth.json")}
    log.info("event=skopeo.copy archive=%s destination=%s tls_verify=%s", archive.name,
             destination, tls_verify)
    started = time.monotonic()
    try:
        result = subprocess.run(argv, env=env, cwd=tmpdir, capture_output=True, text=True,
                                check=False, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SkopeoError(f"skopeo copy to {destination} took more than {timeout:g} s") from None
    except FileNotFoundError:
        raise SkopeoError("skopeo is not installed (apt-get install skopeo)") from None
    if result.returncode != 0:
        error = (result.stderr or result.stdout).replace(token, "<token>").strip()
        raise SkopeoError(f"skopeo copy to {destination} failed: {error[-800:]}")
    try:
        digest = digest_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        digest = ""
    if not DIGEST_RE.fullmatch(digest):
        raise SkopeoError(f"skopeo copy to {destination} reported no digest")
    log.info("event=skopeo.copied destination=%s digest=%s seconds=%.2f", destination, digest,
             time.monotonic() - started)
    return digest


# --- what a namespace holds ------------------------------------------------------------------
@dataclass(frozen=True)
class StoredImage:
    """One tag of a repository, as the registry stores it."""

    repository: str
    tag: str
    digest: str  # of the manifest (a pull by digest names it)
    size: int  # the manifest, its config and layers as stored (compressed); lists: children's
    created: datetime | None  # the image configuration's `created`
    # (digest, size) of everything it references, to count shared content once
    blobs: frozenset[tuple[str, int]]
    manifests: frozenset[tuple[str, int]]

    @property
    def namespace(self) -> str:
        return self.repository.split("/", 1)[0]


def repositories(client: RegistryClient, namespace: str | None = None) -> list[str]:
    """The registry's repositories, or those under `namespace/` only."""
    names = sorted(client.catalog())
    if namespace is None:
        return names
    return [n for n in names if n.startswith(namespace + "/")]


def namespace_images(client: RegistryClient, namespace: str | None = None, *,
                     created: bool = True) -> list[StoredImage]:
    """Every tag under `namespace/` (None: the whole registry), sorted by repository and tag.
    With `created`, each image's configuration is read for its date (cached by digest)."""
    images: list[StoredImage] = []
    for repository in repositories(client, namespace):
        for tag in sorted(client.tags(repository)):
            if not TAG_RE.fullmatch(tag):
                continue
            try:
                images.append(describe(client, repository, tag, created=created))
            except RegistryError as exc:
                if exc.status == 404:  # deleted meanwhile
                    continue
                raise
    return images


def stored_bytes(images: Iterable[StoredImage]) -> int:
    """What these images occupy in the registry: each blob and manifest counted once."""
    blobs: dict[str, int] = {}
    manifests: dict[str, int] = {}
    for image in images:
        blobs.update(image.blobs)
        manifests.update(image.manifests)
    return sum(blobs.values()) + sum(manifests.values())


def describe(client: RegistryClient, repository: str, reference: str, *,
             created: bool = True) -> StoredImage:
    """Digest, size, date and content of one tag (or digest) of a repository."""
    check_repository(repository)
    digest, doc, length = _manifest(client, repository, reference)
    blobs: set[tuple[str, int]] = set()
    manifests: set[tuple[str, int]] = {(digest, length)}
    config_digest = _blobs_of(doc, blobs)
    if doc.get("mediaType") in (MANIFEST_LIST, OCI_INDEX) or "manifests" in doc:
        for child in list(doc.get("manifests") or [])[:MAX_CHILDREN]:
            child_digest = child.get("digest") if isinstance(child, dict) else None
            if not isinstance(child_digest, str) or not DIGEST_RE.fullmatch(child_digest):
                continue
            _, child_doc, child_length = _manifest(client, repository, child_digest)
            manifests.add((child_digest, child_length))
            found = _blobs_of(child_doc, blobs)
            config_digest = config_digest or found
    when = _created(client, repository, config_digest) if created and config_digest else None
    size = sum(s for _, s in manifests) + sum(s for _, s in blobs)
    tag = reference if TAG_RE.fullmatch(reference) else ""
    return StoredImage(repository=repository, tag=tag, digest=digest, size=size, created=when,
                       blobs=frozenset(blobs), manifests=frozenset(manifests))


def _manifest(client: RegistryClient, repository: str, reference: str
              ) -> tuple[str, dict, int]:
    """(digest, document, length) of a manifest; the digest is computed from the body."""
    digest, doc, length, _media_type = client.manifest_document(repository, reference)
    return digest, doc, length


def _blobs_of(doc: dict, blobs: set[tuple[str, int]]) -> str | None:
    """Add the config and layers a manifest references; its config's digest."""
    config = doc.get("config") if isinstance(doc.get("config"), dict) else None
    for part in ([config] if config else []) + list(doc.get("layers") or []):
        if isinstance(part, dict) and isinstance(part.get("digest"), str):
            try:
                blobs.add((part["digest"], max(0, int(part.get("size") or 0))))
            except (TypeError, ValueError):
                continue
    digest = config.get("digest") if config else None
    return digest if isinstance(digest, str) and DIGEST_RE.fullmatch(digest) else None


def _created(client: RegistryClient, repository: str, digest: str) -> datetime | None:
    if digest in _CONFIG_CACHE:
        _CONFIG_CACHE.move_to_end(digest)
        return _CONFIG_CACHE[digest]
    resp = client._request("GET", f"v2/{repository}/blobs/{digest}",
                           f"repository:{repository}:pull", stream=True)
    try:
        body = resp.raw.read(MAX_CONFIG + 1, decode_content=True)
    finally:
        resp.close()
    when = None
    if len(body) <= MAX_CONFIG:
        try:
            value = json.loads(body).get("created")
            when = datetime.fromisoformat(value) if isinstance(value, str) else None
        except (ValueError, AttributeError):
            when = None
    _CONFIG_CACHE[digest] = when
    if len(_CONFIG_CACHE) > _CONFIG_CACHE_SIZE:
        _CONFIG_CACHE.popitem(last=False)
    return when
