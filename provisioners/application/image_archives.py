"""Application images: the catalogue rule and uploaded `docker save` archives, checked first.

An institution may only run an image whose reference the catalogue allows: under
one of ``allowed_prefixes`` (whole path components, e.g. the data centre's own
registry ``registry.dc.gov.bi/``) or listed exactly in ``allowed_images``. Every
reference needs an explicit tag; ``latest`` (moving, so not reviewable) and digest
references are accepted only when listed exactly. Uploaded archives are read as
plain tar files, never extracted, and loaded only when every tag is allowed and
no tag would silently move an existing image. Usage::

    tags = check_image_archive(path, max_bytes=2 << 30)      # ValueError says why not
    image_allowed("registry.dc.gov.bi/minisante/dhis2:2.40", ["registry.dc.gov.bi/"], [])
    load_image_archive(client, path, ["registry.dc.gov.bi/minisante/"], [])
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import tarfile
from collections.abc import Iterable

import docker
import docker.errors

log = logging.getLogger(__name__)

MAX_ARCHIVE_BYTES = 2 * 1024 ** 3
MAX_MEMBERS = 20_000
MAX_METADATA_BYTES = 1024 * 1024  # manifest.json / repositories
MAX_TAGS = 16
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
               b"\x28\xb5\x2f\xfd": "zstd"}
_LOADED_RE = re.compile(r"(^Loaded image ID: |^Loaded image: )(.+)$", re.MULTILINE)
_MANIFEST_KEYS = {"config", "repotags", "layers", "layersources"}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_REF_RE = re.compile(
    rf"(?P<repo>(?:{_HOST}(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)


# --- the catalogue rule ----------------------------------------------------------------------
def normalise_ref(ref: str) -> str:
    """Docker's short form: `docker.io/library/x:1` is stored and reported as `x:1`."""
    for hub in ("docker.io/", "index.docker.io/"):
        if ref.startswith(hub):
            ref = ref[len(hub):]
            return ref[len("library/"):] if ref.startswith("library/") else ref
    return ref


def image_allowed(ref: str, allowed_prefixes: list[str], allowed_images: list[str]) -> bool:
    """True if the catalogue allows this image reference (pure: no Docker call)."""
    if not isinstance(ref, str) or len(ref) > 255:
        return False
    match = _REF_RE.fullmatch(ref)
    if match is None:
        return False
    ref = normalise_ref(ref)
    if ref in {normalise_ref(i) for i in allowed_images if isinstance(i, str)}:
        return True  # an exact entry may even be a :latest or a digest reference
    tag, digest = match.group("tag"), match.group("digest")
    if tag is None or digest is not None or tag == "latest":
        return False
    repo = normalise_ref(match.group("repo"))
    for prefix in allowed_prefixes:
        base = normalise_ref(prefix).rstrip("/")
        if base and (repo == base or repo.startswith(base + "/")):
            return True
    return False


def refused_tags(tags: Iterable[str], allowed_prefixes: list[str],
                 allowed_images: list[str]) -> list[str]:
    """The tags among these that the catalogue does not allow."""
    return [t for t in tags if not image_allowed(t, allowed_prefixes, allowed_images)]


# --- reading an archive without loading it ---------------------------------------------------
def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"not a docker image archive: unsafe path {name!r}")
    if member.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        if member.linkname.startswith("/") or target.startswith(".."):
            raise ValueError(f"not a docker image archive: link {name!r} points outside it")
    elif not (member.isfile() or member.isdir()):
        raise ValueError(f"not a docker image archive: {name!r} is not a file or directory")


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo) -> object:
    if member.size > MAX_METADATA_BYTES:
        raise ValueError(f"not a docker image archive: {member.name} is too large")
    raw = tar.extractfile(member).read()

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        keys = [k.lower() for k, _ in pairs]  # Go's decoder matches keys case-insensitively
        if len(keys) != len(set(keys)):
            raise ValueError(f"not a docker image archive: duplicate keys in {member.name}")
        return dict(pairs)

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"not a docker image archive: {member.name} is not JSON") from None


def _archive_images(path: str, max_bytes: int) -> list[tuple[str, list[str]]]:
    """(image id, tags) for each image of a checked archive."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"image archive is {size} bytes; the limit is {max_bytes}")
    with open(path, "rb") as handle:
        head = handle.read(8)
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            raise ValueError(f"the archive is {kind}-compressed: upload the plain tar "
                             "written by `docker save -o image.tar NAME:TAG`")
    try:
        tar = tarfile.open(path, mode="r:")
    except tarfile.TarError:
        raise ValueError("not a docker image archive: the file is not a tar archive") from None
    with tar:
        members: dict[str, tarfile.TarInfo] = {}
        for member in tar:
            if len(members) >= MAX_MEMBERS:
                raise ValueError(f"not a docker image archive: more than {MAX_MEMBERS} entries")
            _check_member(member)
            name = posixpath.normpath(member.name)
            if name in members and not member.isdir():
                raise ValueError(f"not a docker image archive: {name!r} appears twice")
            members[name] = member
        manifest_member = members.get("manifest.json")
        if manifest_member is None or not manifest_member.isfile():
            raise ValueError("not a docker image archive: manifest.json is missing "
                             "(make it with `docker save`)")
        manifest = _read_json(tar, manifest_member)
        if "repositories" in members and members["repositories"].isfile():
            if not isinstance(_read_json(tar, members["repositories"]), dict):
                raise ValueError("not a docker image archive: bad repositories file")
    return _parse_manifest(manifest, members)


def _parse_manifest(manifest: object, members: dict[str, tarfile.TarInfo]
                    ) -> list[tuple[str, list[str]]]:
    if not isinstance(manifest, list) or not manifest:
        raise ValueError("not a docker image archive: manifest.json lists no image")
    images = []
    for entry in manifest:
        if not isinstance(entry, dict) or not set(k.lower() for k in entry) <= _MANIFEST_KEYS:
            raise ValueError("not a docker image archive: unexpected manifest.json entry")
        config, layers, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags")
        if not isinstance(config, str) or not isinstance(layers, list) \
                or not all(isinstance(x, str) for x in layers):
            raise ValueError("not a docker image archive: manifest.json needs Config and Layers")
        for name in (config, *layers):
            if posixpath.normpath(name) not in members:
                raise ValueError(f"not a docker image archive: {name} is listed but missing")
        if not isinstance(tags, list) or not tags \
                or not all(isinstance(t, str) for t in tags):
            raise ValueError("the image in the archive has no tag: save it by name, "
                             "`docker save -o image.tar NAME:TAG`")
        digest = posixpath.basename(config).removesuffix(".json")
        if re.fullmatch(r"[a-f0-9]{64}", digest) is None:
            raise ValueError("not a docker image archive: unexpected Config name")
        images.append((f"sha256:{digest}", list(tags)))
    if sum(len(t) for _, t in images) > MAX_TAGS:
        raise ValueError(f"the archive carries more than {MAX_TAGS} tags")
    return images


def check_image_archive(path: str | os.PathLike, max_bytes: int = MAX_ARCHIVE_BYTES
                        ) -> list[str]:
    """The RepoTags of a `docker save` archive, read without loading it; ValueError if bad."""
    images = _archive_images(os.fspath(path), max_bytes)
    return [tag for _, tags in images for tag in tags]


# --- loading ---------------------------------------------------------------------------------
def load_image_archive(client: docker.DockerClient, path: str | os.PathLike,
                       allowed_prefixes: list[str], allowed_images: list[str],
                       max_bytes: int = MAX_ARCHIVE_BYTES) -> list[str]:
    """Load an archive whose tags are all allowed; anything unexpected is removed again."""
    images = _archive_images(os.fspath(path), max_bytes)
    tags = [tag for _, image_tags in images for tag in image_tags]
    refused = refused_tags(tags, allowed_prefixes, allowed_images)
    if refused:
        raise ValueError(f"image not allowed by the catalogue: {', '.join(refused)}")
    tags_before, ids_before = _snapshot(client)
    for image_id, image_tags in images:
        for tag in image_tags:
            current = tags_before.get(normalise_ref(tag))
            if current is not None and current != image_id:
                raise ValueError(f"tag {tag} already exists with different content: "
                                 "publish a new version under a new tag")
    log.info("event=image.load tags=%s", ",".join(tags))
    loaded = _load(client, os.fspath(path))
    loaded_tags = sorted(n for n in loaded if not n.startswith("sha256:"))
    bad = refused_tags(loaded_tags, allowed_prefixes, allowed_images)
    expected = {normalise_ref(t) for t in tags}
    unexpected = [t for t in loaded_tags if normalise_ref(t) not in expected]
    if bad or unexpected or not loaded_tags:
        _unload(client, loaded, tags_before, ids_before)
        log.warning("event=image.load_refused tags=%s", ",".join(loaded_tags))
        raise ValueError("the loaded image carried tags the catalogue does not allow "
                         f"({', '.join(sorted(set(bad + unexpected))) or 'no tag'}); "
                         "it was removed again")
    log.info("event=image.loaded tags=%s", ",".join(loaded_tags))
    return loaded_tags


def _snapshot(client: docker.DockerClient) -> tuple[dict[str, str], set[str]]:
    """Every local tag (-> image id) and image id, so a refused load can be undone exactly."""
    tags: dict[str, str] = {}
    ids: set[str] = set()
    for image in client.images.list(all=True):
        ids.add(image.id)
        for tag in image.tags:
            tags[normalise_ref(tag)] = image.id
    return tags, ids


def _load(client: docker.DockerClient, path: str) -> list[str]:
    """Stream the archive to the daemon; the names (tags or ids) it reports as loaded."""
    names: list[str] = []
    with open(path, "rb") as handle:
        for chunk in client.api.load_image(handle):
            if "errorDetail" in chunk:
                raise docker.errors.ImageLoadError(chunk["errorDetail"].get("message", ""))
            match = _LOADED_RE.search(str(chunk.get("stream", "")))
            if match:
                names.append(match.group(2).strip())
    return names


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def _unload(client: docker.DockerClient, loaded: list[str], tags_before: dict[str, str],
            ids_before: set[str]) -> None:
    """Undo a load: new tags removed, moved tags put back, new images deleted; nothing else."""
    new_ids = set()
    for name in loaded:
        image_id = _image_id(client, name)
        if image_id is None:
            continue
        if image_id not in ids_before:
            new_ids.add(image_id)
        if name.startswith("sha256:"):
            continue
        old = tags_before.get(normalise_ref(name))
        if old is None:
            client.images.remove(name, force=False, noprune=True)
            log.info("event=image.unload tag=%s", name)
        elif old != image_id:
            repo, _, tag = name.rpartition(":")
            client.images.get(old).tag(repo, tag)  # give the tag back to its image
            log.warning("event=image.unload tag=%s restored=%s", name, old)
    for image_id in new_ids:
        try:
            client.images.remove(image_id, force=False, noprune=False)
            log.info("event=image.unload image=%s", image_id)
        except docker.errors.APIError as exc:
            log.warning("event=image.unload_failed image=%s error=%s", image_id, exc)
