"""Application images: the catalogue rule, and uploaded `docker save` archives read without
any engine.

An institution may only run an image whose reference the catalogue allows: under
one of ``allowed_prefixes`` (whole path components, e.g. the data centre's own
registry ``registry.dc.gov.bi/``) or listed exactly in ``allowed_images``. Every
reference needs an explicit tag; ``latest`` (moving, so not reviewable) and digest
references are accepted only when listed exactly.

An uploaded archive is **never given to `docker load`**: it is read here as a plain tar (never
extracted, nothing written), its one image described, the unpacked size of its layers bounded,
and then `provisioners.registry.skopeo` copies it into the registry under a name the caller
builds (the institution's namespace, whatever the archive claims). Usage::

    image = read_image_archive(path, max_bytes=1 << 30)   # ArchiveRefused says why not
    name = destination_name(image.tags, "portail:1.0")     # ("portail", "1.0") or None
    unpacked_size(path, image, bound=4 << 30)              # refused past the bound
    image_allowed("registry.dc.gov.bi/minisante/dhis2:2.40", ["registry.dc.gov.bi/"], [])
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from provisioners.registry.api import TAG_RE

MAX_ARCHIVE_BYTES = 2 * 1024 ** 3
MAX_UNPACKED_BYTES = 4 * 1024 ** 3  # default bound on the layers' unpacked size
MAX_MEMBERS = 20_000
MAX_METADATA_BYTES = 1024 * 1024  # manifest.json / repositories / the image config
MAX_TAGS = 16
MAX_NAME = 128  # the last path component of an image name
MAX_LINK_HOPS = 8
READ_CHUNK = 1024 * 1024  # what a layer's decompressor may hand back at once
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
               b"\x28\xb5\x2f\xfd": "zstd"}
_MANIFEST_KEYS = {"config", "repotags", "layers", "layersources"}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(_COMPONENT)
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_REF_RE = re.compile(
    rf"(?P<repo>(?:{_HOST}(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)


class ArchiveRefused(ValueError):
    """The archive is not imported. `code` names the reason (the portal words it in the
    uploader's language), `params` its figures; the message is plain English for logs.

    Codes: too_large, compressed, not_tar, invalid, several_images, too_many_tags,
    unpacked_too_large, layer_format.
    """

    def __init__(self, code: str, message: str, **params: object) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


def _invalid(detail: str) -> ArchiveRefused:
    return ArchiveRefused("invalid", f"not a docker image archive: {detail}", detail=detail)


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


# --- the name an imported image gets ---------------------------------------------------------
def split_name(text: str | None) -> tuple[str, str] | None:
    """`portail:1.0` -> ("portail", "1.0"): one path component (lowercase, distribution's
    grammar) and a tag; None when it is not exactly that."""
    if not isinstance(text, str) or len(text) > MAX_NAME + 129:
        return None
    name, sep, tag = text.partition(":")
    if not sep or len(name) > MAX_NAME or not _NAME_RE.fullmatch(name) \
            or not TAG_RE.fullmatch(tag):
        return None
    return name, tag


def destination_name(tags: Iterable[str], fallback: str | None = None
                     ) -> tuple[str, str] | None:
    """The (name, tag) an archive is imported as: the last path component and tag of the first
    of its RepoTags that has valid ones, else `fallback` (what the uploader typed), else None.

    Whatever registry or namespace a tag names (`comgov/base:bookworm`), only its last component
    is kept: the caller puts it under the institution's namespace.
    """
    for tag in tags:
        found = split_name(tag.rsplit("/", 1)[-1]) if isinstance(tag, str) else None
        if found is not None:
            return found
    return split_name(fallback) if fallback else None


# --- reading an archive without loading it ---------------------------------------------------
@dataclass(frozen=True)
class ArchiveImage:
    """The one image of a checked `docker save` archive."""

    config: str  # member name of its configuration (…/<hex>.json or blobs/sha256/<hex>)
    image_id: str  # sha256:<hex> of the configuration, as the engine would name the image
    layers: tuple[str, ...]  # member names, in order (possibly links to other members)
    tags: tuple[str, ...]  # RepoTags as the archive claims them (may be empty)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        raise _invalid(f"unsafe path {name!r}")
    if member.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        if member.linkname.startswith("/") or target.startswith(".."):
            raise _invalid(f"link {name!r} points outside it")
    elif not (member.isfile() or member.isdir()):
        raise _invalid(f"{name!r} is not a file or directory")


def _link_target(member: tarfile.TarInfo) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(posixpath.normpath(member.name)),
                                             member.linkname))


def _resolve(members: dict[str, tarfile.TarInfo], name: str) -> tarfile.TarInfo:
    """The regular file `name` is, following links inside the archive; else refused."""
    member = members.get(posixpath.normpath(name))
    for _ in range(MAX_LINK_HOPS):
        if member is None:
            break
        if member.isfile():
            return member
        if not member.issym():
            break
        member = members.get(_link_target(member))
    raise _invalid(f"{name} is not a file of the archive")


def _scan(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every member by normalised name; unsafe names, special files, duplicates, links to
    anything but a file and members reached through a link are refused.

    That last rule is the `d -> .` trick: an engine that unpacks the archive writes
    `d/manifest.json` over `manifest.json` after the check has read the first one.
    """
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar:
        if len(members) >= MAX_MEMBERS:
            raise _invalid(f"more than {MAX_MEMBERS} entries")
        _check_member(member)
        name = posixpath.normpath(member.name)
        if name == "." and member.isdir():
            continue
        if name in members:
            raise _invalid(f"{name!r} appears twice")
        members[name] = member
    for name, member in members.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = members.get("/".join(parts[:depth]))
            if parent is not None and parent.issym():
                raise _invalid(f"{name!r} is reached through the link {parent.name!r}")
        if member.issym():
            _resolve(members, name)  # a link to a directory (`d -> .`) or to nothing: refused
    return members


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo) -> object:
    if member.size > MAX_METADATA_BYTES:
        raise _invalid(f"{member.name} is too large")
    raw = tar.extractfile(member).read(MAX_METADATA_BYTES + 1)

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        keys = [k.lower() for k, _ in pairs]  # Go's decoder matches keys case-insensitively
        if len(keys) != len(set(keys)):
            raise _invalid(f"duplicate keys in {member.name}")
        return dict(pairs)

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _invalid(f"{member.name} is not JSON") from None


def _open(path: str, max_bytes: int) -> tarfile.TarFile:
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ArchiveRefused("too_large", f"image archive is {size} bytes; the limit is "
                             f"{max_bytes}", size=size, limit=max_bytes)
    with open(path, "rb") as handle:
        head = handle.read(8)
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            raise ArchiveRefused("compressed", f"the archive is {kind}-compressed: upload the "
                                 "plain tar written by `docker save -o image.tar NAME:TAG`",
                                 kind=kind)
    try:
        return tarfile.open(path, mode="r:")
    except tarfile.TarError:
        raise ArchiveRefused("not_tar", "not a docker image archive: the file is not a tar "
                             "archive") from None


def read_image_archive(path: str | os.PathLike, max_bytes: int = MAX_ARCHIVE_BYTES
                       ) -> ArchiveImage:
    """The one image of a `docker save` archive, read without loading or extracting it."""
    with _open(os.fspath(path), max_bytes) as tar:
        members = _scan(tar)
        manifest_member = members.get("manifest.json")
        if manifest_member is None or not manifest_member.isfile():
            raise _invalid("manifest.json is missing (make it with `docker save`)")
        manifest = _read_json(tar, manifest_member)
        if "repositories" in members and members["repositories"].isfile():
            if not isinstance(_read_json(tar, members["repositories"]), dict):
                raise _invalid("bad repositories file")
        image = _parse_manifest(manifest, members)
        config = _resolve(members, image.config)
        if config.size > MAX_METADATA_BYTES:
            raise _invalid(f"{image.config} is too large")
        digest = hashlib.sha256(tar.extractfile(config).read(MAX_METADATA_BYTES + 1))
        if f"sha256:{digest.hexdigest()}" != image.image_id:
            raise _invalid(f"{image.config} does not match its name")
    return image


def _parse_manifest(manifest: object, members: dict[str, tarfile.TarInfo]) -> ArchiveImage:
    if not isinstance(manifest, list) or not manifest:
        raise _invalid("manifest.json lists no image")
    if len(manifest) > 1:
        raise ArchiveRefused("several_images", f"the archive holds {len(manifest)} images; "
                             "save one image per archive", count=len(manifest))
    entry = manifest[0]
    if not isinstance(entry, dict) or not set(k.lower() for k in entry) <= _MANIFEST_KEYS:
        raise _invalid("unexpected manifest.json entry")
    config, layers, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags")
    if not isinstance(config, str) or not isinstance(layers, list) \
            or not all(isinstance(x, str) for x in layers):
        raise _invalid("manifest.json needs Config and Layers")
    for name in (config, *layers):
        if posixpath.normpath(name) not in members:
            raise _invalid(f"{name} is listed but missing")
        _resolve(members, name)
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _invalid("RepoTags is not a list of names")
    if len(tags) > MAX_TAGS:
        raise ArchiveRefused("too_many_tags", f"the archive carries more than {MAX_TAGS} tags",
                             limit=MAX_TAGS)
    digest = posixpath.basename(config).removesuffix(".json")
    if re.fullmatch(r"[a-f0-9]{64}", digest) is None:
        raise _invalid("unexpected Config name")
    return ArchiveImage(config=config, image_id=f"sha256:{digest}", layers=tuple(layers),
                        tags=tuple(tags))


def check_image_archive(path: str | os.PathLike, max_bytes: int = MAX_ARCHIVE_BYTES
                        ) -> list[str]:
    """The RepoTags of a `docker save` archive (maybe none), read without loading it;
    ArchiveRefused (a ValueError) if it is not one image saved by `docker save`."""
    return list(read_image_archive(path, max_bytes).tags)


# --- layer bombs -----------------------------------------------------------------------------
def _layer_compression(handle) -> str | None:
    head = handle.read(8)
    handle.seek(0)
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            return kind
    return None


def unpacked_size(path: str | os.PathLike, image: ArchiveImage, bound: int) -> int:
    """The unpacked size of the image's layers, refused as soon as it passes `bound`.

    gzip, bzip2 and xz layers are decompressed as a stream, at most READ_CHUNK bytes at a time,
    and counted; nothing is written anywhere. An uncompressed layer counts its own size. Each
    listed layer counts, a layer listed twice twice (an engine unpacks it twice). A zstd layer
    cannot be measured here and is refused, as is a layer whose stream is corrupt.
    """
    total = 0

    def add(count: int) -> None:
        nonlocal total
        total += count
        if total > bound:
            raise ArchiveRefused("unpacked_too_large", f"the image's layers unpack to more "
                                 f"than {bound} bytes", limit=bound)

    with tarfile.open(os.fspath(path), mode="r:") as tar:
        members = _scan(tar)
        for name in image.layers:
            member = _resolve(members, name)
            handle = tar.extractfile(member)
            kind = _layer_compression(handle)
            if kind is None:
                add(member.size)
                continue
            if kind == "zstd":
                raise ArchiveRefused("layer_format", f"layer {name} is zstd-compressed",
                                     layer=name, kind=kind)
            stream = {"gzip": lambda: gzip.GzipFile(fileobj=handle, mode="rb"),
                      "bzip2": lambda: bz2.BZ2File(handle, mode="rb"),
                      "xz": lambda: lzma.LZMAFile(handle, mode="rb")}[kind]()
            try:
                with stream:
                    while chunk := stream.read(READ_CHUNK):
                        add(len(chunk))
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
                raise ArchiveRefused("layer_format", f"layer {name} is not a valid {kind} "
                                     f"stream ({exc})", layer=name, kind=kind) from None
    return total
