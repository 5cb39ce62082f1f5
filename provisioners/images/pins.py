"""Platform images pinned by content: what the build step recorded, how a container names an
image, and the push of the platform's images to the registry's `comgov/` namespace.

The record (`instance/images.json`, written by `build.ensure_images` and `push_images`) maps
each platform tag to the image the platform built::

    {"version": 1, "images": {"comgov/nginx:bookworm": {
        "name": "nginx", "id": "sha256:…", "hash": "<context hash label>",
        "registry": "127.0.0.1:5001", "digest": "sha256:<manifest digest>"}}}

`resolve` turns a tag from the settings into what a container spec uses: the registry digest
(`127.0.0.1:5001/comgov/nginx@sha256:…`) when the image was pushed to the configured registry,
else the recorded image id (`sha256:…`, itself a digest of the image's config and layers), so a
tag moved on the engine afterwards changes nothing. Without a record (tests, a fresh checkout)
the tag's image is used only if it carries the platform's labels, and pinned to its id.
Usage::

    record = pins.Record.load(Path("instance/images.json"))
    ref = pins.resolve(client, "comgov/nginx:bookworm", record, registry="127.0.0.1:5001")
    digest = pins.push(client, image_id, "127.0.0.1:5001", "comgov/nginx", "bookworm", token)
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import docker
import docker.errors

from provisioners.registry.api import DIGEST_RE, RegistryClient, RegistryError

log = logging.getLogger(__name__)

NAMESPACE = "comgov"
HASH_LABEL = "bi.gov.comgov.context-hash"  # hash of the build inputs (base: of its recipe)
IMAGE_LABEL = "bi.gov.comgov.image"  # which platform image this is: base, nginx, …
RECORD_VERSION = 1


class UntrustedImage(RuntimeError):
    """A platform tag on the engine names an image the platform did not build."""


@dataclass(frozen=True)
class Pin:
    """One platform image as built (and, once pushed, as the registry stores it)."""

    name: str  # base, nginx, … (the IMAGE_LABEL value)
    id: str  # the engine's image id, sha256:…
    hash: str  # its HASH_LABEL value
    registry: str | None = None  # host:port it was pushed to
    digest: str | None = None  # the manifest digest there, sha256:…

    def pinned(self, repository: str, registry: str | None) -> str:
        """The reference a container uses: by registry digest when pushed there, else the id."""
        if registry and self.registry == registry and self.digest:
            return f"{registry}/{repository}@{self.digest}"
        return self.id


class Record:
    """The build step's record of platform images, kept as a small JSON file (0644, replaced
    atomically). A missing file is an empty record; an unreadable one is an error."""

    def __init__(self, path: Path | None, pins: dict[str, Pin] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.pins: dict[str, Pin] = dict(pins or {})

    @classmethod
    def load(cls, path: Path | str | None) -> Record:
        if path is None:
            return cls(None)
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"the image record {path} is unreadable: {exc}; delete it and "
                               "rebuild the images (python -m devtools images)") from exc
        images = doc.get("images") if isinstance(doc, dict) else None
        if doc.get("version") != RECORD_VERSION or not isinstance(images, dict):
            raise RuntimeError(f"the image record {path} has an unknown format; delete it and "
                               "rebuild the images (python -m devtools images)")
        pins = {}
        for tag, entry in images.items():
            try:
                pins[tag] = Pin(name=str(entry["name"]), id=str(entry["id"]),
                                hash=str(entry.get("hash") or ""),
                                registry=entry.get("registry"), digest=entry.get("digest"))
            except (KeyError, TypeError) as exc:
                raise RuntimeError(f"the image record {path}: bad entry for {tag}") from exc
        return cls(path, pins)

    def get(self, tag: str) -> Pin | None:
        return self.pins.get(tag)

    def built(self, tag: str, name: str, image_id: str, content_hash: str) -> None:
        """Note a built (or verified) image; its registry digest stays only if the id did."""
        old = self.pins.get(tag)
        if old and old.id == image_id and old.hash == content_hash and old.name == name:
            return
        self.pins[tag] = Pin(name=name, id=image_id, hash=content_hash)
        self.save()

    def pushed(self, tag: str, registry: str, digest: str) -> None:
        self.pins[tag] = replace(self.pins[tag], registry=registry, digest=digest)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        doc = {"version": RECORD_VERSION,
               "images": {tag: {k: v for k, v in asdict(pin).items() if v is not None}
                          for tag, pin in sorted(self.pins.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".images-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2)
                fh.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --- what an image found under a platform tag must look like -------------------------------

def label_problem(image, name: str, wanted_hash: str | None = None) -> str | None:
    """Why `image` is not the platform's `name` image judging by its labels (None: it is).

    `wanted_hash` is the hash of the current build inputs; None accepts any recorded hash (the
    resolver, which builds nothing)."""
    found = image.labels or {}
    if found.get(IMAGE_LABEL) != name:
        return f"label {IMAGE_LABEL}={found.get(IMAGE_LABEL)!r}, not {name!r}"
    if not found.get(HASH_LABEL):
        return f"no {HASH_LABEL} label"
    if wanted_hash is not None and found.get(HASH_LABEL) != wanted_hash:
        return f"its {HASH_LABEL} is not the hash of the current build inputs"
    return None


def base_problem(image, wanted_hash: str | None, cmd: list[str]) -> str | None:
    """The base image is debootstrap's tree imported as one layer, with the recipe's command and
    no entry point or user: anything built FROM it (which inherits its labels) has more layers."""
    problem = label_problem(image, "base", wanted_hash)
    if problem:
        return problem
    layers = (image.attrs.get("RootFS") or {}).get("Layers") or []
    if len(layers) != 1:
        return f"{len(layers)} layers, not the single imported one"
    config = image.attrs.get("Config") or {}
    if config.get("Entrypoint") or config.get("User") or (config.get("Cmd") or []) != cmd:
        return "its entry point, user or command is not the recipe's"
    return None


def id_problem(image_id: str, pin: Pin | None) -> str | None:
    if pin is not None and pin.id != image_id:
        return f"its id {image_id[:19]} is not the recorded {pin.id[:19]}"
    return None


# --- resolving a settings' tag to what a container names -----------------------------------

def repository_of(tag: str) -> str:
    """comgov/nginx:bookworm -> comgov/nginx (a registry host's port is not a tag)."""
    repository, sep, version = tag.rpartition(":")
    return repository if sep and "/" not in version else tag


def platform_name(tag: str) -> str | None:
    """comgov/nginx:bookworm -> nginx; None for a name outside the platform's namespace."""
    repository = repository_of(tag)
    namespace, _, name = repository.partition("/")
    return name if namespace == NAMESPACE and name and "/" not in name else None


def resolve(client: docker.DockerClient, tag: str, record: Record,
            registry: str | None = None) -> str:
    """What a container spec names for the image the settings call `tag`.

    Recorded: the registry digest when pushed to `registry`, else the recorded id. Not recorded:
    the tag's current image id, after checking a `comgov/` image's labels (UntrustedImage when
    they are wrong); a missing image is returned as named, so creating the container fails
    naming it."""
    pin = record.get(tag)
    if pin is not None:
        return pin.pinned(repository_of(tag), registry)
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return tag
    name = platform_name(tag)
    if name is not None:
        problem = label_problem(image, name)
        if problem:
            log.error("event=image.untrusted image=%s id=%s reason=%r", tag, image.id[:19],
                      problem)
            raise UntrustedImage(f"{tag} on this engine is not an image the platform built "
                                 f"({problem}); rebuild it: python -m devtools images")
    return image.id


# --- pushing to the registry's comgov/ namespace -------------------------------------------

def push(client: docker.DockerClient, image_id: str, registry: str, repository: str,
         version: str, token: str) -> str:
    """Push the image `image_id` as <registry>/<repository>:<version>; return its manifest digest.

    The engine pushes it (skipping layers the registry has) with `token`, a registry bearer
    token handed over in X-Registry-Auth (`registrytoken`): dockerd uses it as it is, so neither
    a login stored in the engine nor the token endpoint is needed. The id is tagged, not a local
    tag, so what is pushed is what was verified; the engine then knows the image by
    <registry>/<repository>@<digest> too, which is how containers name it."""
    target = f"{registry}/{repository}"
    client.api.tag(image_id, target, version, force=True)
    digest = None
    try:
        for chunk in client.api.push(target, version, auth_config={"registrytoken": token},
                                     stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
                raise RuntimeError(f"pushing {target}:{version} failed: {message}")
            aux = chunk.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
    except docker.errors.APIError as exc:
        raise RuntimeError(f"pushing {target}:{version} failed: {exc}") from exc
    if not digest or not DIGEST_RE.fullmatch(digest):
        raise RuntimeError(f"pushing {target}:{version} reported no digest")
    pushed = client.images.get(f"{target}@{digest}").id
    if pushed != image_id:
        raise RuntimeError(f"{target}@{digest} is {pushed[:19]} on the engine, not {image_id[:19]}")
    return digest


def push_images(client: docker.DockerClient, record: Record, registry: str, api: RegistryClient,
                token_for, tags: list[str] | None = None) -> dict[str, str]:
    """Push every recorded platform image (or `tags`) to the registry; record and return each
    pinned reference. `token_for(scope)` gives a token for a space-separated scope list (the
    image's repository push and pull; pull of comgov/base, whose layers the others share, so
    the engine may mount them instead of sending them again). The digest the engine reports
    must be the one the registry then serves for the tag."""
    pinned: dict[str, str] = {}
    for tag in tags if tags is not None else sorted(record.pins):
        pin = record.get(tag)
        if pin is None:
            raise RuntimeError(f"{tag} is not in the image record {record.path}")
        repository = repository_of(tag)
        version = tag[len(repository) + 1:]
        if platform_name(tag) is None or not version:
            raise RuntimeError(f"{tag} is not a {NAMESPACE}/<name>:<version> tag")
        scopes = [f"repository:{repository}:push,pull"]
        base = f"{NAMESPACE}/base"
        if repository != base:
            scopes.append(f"repository:{base}:pull")
        digest = push(client, pin.id, registry, repository, version, token_for(" ".join(scopes)))
        try:
            served = api.manifest(repository, version).digest
        except RegistryError as exc:
            raise RuntimeError(f"{registry}/{tag} after the push: {exc}") from exc
        if served != digest:
            raise RuntimeError(f"{registry}/{tag} is {served} in the registry, not the pushed "
                               f"{digest}")
        record.pushed(tag, registry, digest)
        pinned[tag] = record.get(tag).pinned(repository, registry)
        log.info("event=image.pushed image=%s ref=%s", tag, pinned[tag])
    return pinned
