"""Check an uploaded site archive and turn it into a clean tar: files and folders only, no escape.

No step holds an archive whole in memory (issue 9, item 8):

- the portal calls `receive_archive`: the upload is copied to a file in `CHUNK`-sized pieces, at
  most `max_bytes`, then a quick look (the format; a zip's directory; a tar's members found in
  its first `QUICK_LOOK_BYTES` once unpacked) refuses the common mistakes at once;
- the deploy job calls `clean_archive_file`: every member is read from that file in turn, every
  rule applied as it comes (the unpacked size is counted from each member's header, before its
  data is read, so a bomb is refused as it is read) and the clean tar is written to a file.

`clean_archive` does both on a stream and returns the clean tar as bytes (small archives).
"""
from __future__ import annotations

import hashlib
import lzma
import os
import posixpath
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask_babel import lazy_gettext as _l

MAX_MEMBERS = 20000
CHUNK = 1024 * 1024  # what is read or written at once
QUICK_LOOK_BYTES = 1024 * 1024  # how far (unpacked) the portal looks into a tar
MAX_NAME = 4096  # PATH_MAX: the helper could not create a longer path anyway
MAX_EXTENDED_HEADER = 1024 * 1024  # a long name or pax header, which tarfile reads whole
MAX_EXTENDED_HEADERS = 16 * 1024 * 1024  # all of them in one archive (each is unpacked too)
MAX_ZIP_DIRECTORY = 8 * 1024 * 1024  # a zip's central directory, which zipfile reads whole
# What reading a damaged archive raises (a zip member with a bad CRC: BadZipFile; an
# encrypted one: RuntimeError; extended headers chained without end: RecursionError).
READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError,
               zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError)


class ArchiveError(ValueError):
    """The archive is refused; the message tells the user what to fix."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = message


@dataclass(frozen=True)
class CleanArchive:
    data: bytes  # an uncompressed tar of regular files and directories
    files: int
    total_bytes: int


@dataclass(frozen=True)
class CleanFile:
    path: Path  # an uncompressed tar of regular files and directories
    files: int
    total_bytes: int


@dataclass(frozen=True)
class _Member:
    name: str
    is_dir: bool
    size: int  # as declared; the bytes read are held to it
    mtime: float
    open: Callable[[], BinaryIO] | None  # files only


def _damaged(error) -> ArchiveError:
    return ArchiveError(_l("The archive is damaged or incomplete (%(error)s).",
                           error=str(error)[:120]))


def _link(name: str) -> ArchiveError:
    return ArchiveError(_l("The archive contains a link (%(name)s); links are not allowed, put "
                           "the file itself.", name=name))


def _special(name: str) -> ArchiveError:
    return ArchiveError(_l("The archive contains a special file (%(name)s); only files and "
                           "folders are allowed.", name=name))


def _safe_name(name: str) -> str:
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(_l("The archive contains an absolute path (%(name)s); "
                              "create it from inside the site's folder.", name=name))
    if "\\" in name:
        name = name.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(_l("The archive contains a path with “..” (%(name)s); remove it.",
                              name=name))
    if any("\x00" in p for p in parts) or len(name) > MAX_NAME:
        raise ArchiveError(_l("The archive contains an invalid file name."))
    return posixpath.join(*parts) if parts else ""


# ------------------------------------------------------------------------------ reading

class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a long name or pax header whole (global ones are kept for the rest of the
    archive): refuse oversized ones before they are read, and too many of them in all. Old GNU
    sparse members carry an unbounded list of extents: refused as special files."""

    def _proc_member(self, tar):  # tarfile's documented hook for subclasses
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _special(self.name)
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                         tarfile.SOLARIS_XHDTYPE, tarfile.XGLTYPE):
            if self.size > MAX_EXTENDED_HEADER:
                raise _damaged(f"extended header over {MAX_EXTENDED_HEADER // 1024} KiB")
            tar.extended_header_bytes = getattr(tar, "extended_header_bytes", 0) + self.size
            if tar.extended_header_bytes > MAX_EXTENDED_HEADERS:
                raise _damaged(f"extended headers over {MAX_EXTENDED_HEADERS // 1024 // 1024} "
                               "MiB in all")
        return super()._proc_member(tar)


def _tar_members(tar: tarfile.TarFile, budget: int | None) -> Iterator[_Member]:
    member = tar.next()  # the first one was read when the archive was opened
    while member is not None:
        tar.members.clear()  # nothing here looks members up again: keep memory flat
        if member.issym() or member.islnk():
            raise _link(member.name)
        if not (member.isfile() or member.isdir()):
            raise _special(member.name)
        opener = (lambda m=member: tar.extractfile(m)) if member.isfile() else None
        yield _Member(member.name, member.isdir(), member.size if member.isfile() else 0,
                      member.mtime, opener)
        if budget is not None and tar.offset > budget:
            return  # the next header lies beyond what the quick look unpacks
        member = tar.next()


def _check_zip_directory(path: Path) -> None:
    """zipfile loads the central directory whole, one object per entry: walk it first."""
    with open(path, "rb") as fh:
        # zipfile's own reading of the end record, so both agree on where the directory is.
        end = zipfile._EndRecData(fh)  # noqa: SLF001
        if end is None:
            return  # zipfile says what is wrong
        size = end[zipfile._ECD_SIZE]  # noqa: SLF001
        if size > MAX_ZIP_DIRECTORY:
            raise _damaged(f"zip directory over {MAX_ZIP_DIRECTORY // (1024 * 1024)} MiB")
        start = end[zipfile._ECD_LOCATION] - size  # noqa: SLF001
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # noqa: SLF001
            start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        if start < 0:
            return
        fh.seek(start)
        directory = fh.read(size)
    position = count = 0
    while position + zipfile.sizeCentralDir <= len(directory):
        fields = struct.unpack(zipfile.structCentralDir,
                               directory[position:position + zipfile.sizeCentralDir])
        if fields[0] != zipfile.stringCentralDir:
            return  # zipfile says what is wrong
        count += 1
        if count > MAX_MEMBERS:
            raise ArchiveError(_l("The archive has more than %(n)s entries.", n=MAX_MEMBERS))
        # fixed part, then the name, extra field and comment lengths
        position += zipfile.sizeCentralDir + fields[12] + fields[13] + fields[14]


def _zip_members(zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            raise _link(info.filename)
        if mode not in (0, 0o100000, 0o040000):
            raise _special(info.filename)
        is_dir = info.is_dir()
        # Never trust a zip member's declared size: zipfile stops reading at it and checks
        # the CRC, so a member longer or shorter than declared fails as damaged.
        opener = None if is_dir else (lambda info=info: zf.open(info))
        yield _Member(info.filename, is_dir, 0 if is_dir else info.file_size, 0, opener)


def _members(path: Path, budget: int | None = None) -> Iterator[_Member]:
    """The archive's members, read from the file as they come; `budget`: stop a tar early."""
    if zipfile.is_zipfile(path):
        _check_zip_directory(path)
        with zipfile.ZipFile(path) as zf:
            yield from _zip_members(zf)
        return
    try:
        tar = tarfile.open(path, mode="r:*", tarinfo=_BoundedTarInfo)
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError):
        raise ArchiveError(_l("This file is not an archive; upload a .tar.gz, .tgz, .tar or "
                              ".zip file of the site's content.")) from None
    with tar:
        yield from _tar_members(tar, budget)


# ------------------------------------------------------------------------------ the rules

class _WriteFailed(Exception):
    """Writing the clean tar failed (a full disk): the worker's problem, not the archive's."""


class _Sink:
    """The clean tar's file, telling its own errors apart from the archive's."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            raise _WriteFailed(str(exc)) from exc

    def tell(self) -> int:
        return self.fh.tell()


def _walk(members: Iterator[_Member], max_unpacked: int,
          out: tarfile.TarFile | None) -> tuple[int, int]:
    """Apply every rule to each member as it comes; copy it into `out` when given. Returns the
    files kept and their bytes."""
    files = kept = unpacked = count = 0
    seen: set[bytes] = set()  # digests: names may be long
    try:
        for member in members:
            count += 1
            if count > MAX_MEMBERS:
                raise ArchiveError(_l("The archive has more than %(n)s entries.",
                                      n=MAX_MEMBERS))
            clean = _safe_name(member.name)
            # Counted from the header, before a byte of data is unpacked; a duplicate's data
            # is unpacked too (to be skipped), so it counts as well.
            unpacked += member.size
            if unpacked > max_unpacked:
                raise ArchiveError(_l("Once unpacked the content exceeds the site's disk "
                                      "allowance of %(mib)s MiB; choose a larger size or remove "
                                      "files.", mib=max_unpacked // (1024 * 1024)))
            key = hashlib.blake2b(clean.encode("utf-8", "surrogateescape"),
                                  digest_size=16).digest()
            if not clean or key in seen:
                continue
            seen.add(key)
            info = tarfile.TarInfo(clean)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = int(member.mtime or 0)
            if member.is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                if out is not None:
                    out.addfile(info)
                continue
            if out is not None:
                info.size, info.mode = member.size, 0o644
                with member.open() as data:
                    out.addfile(info, data)  # copies exactly info.size bytes, CHUNK at a time
            files += 1
            kept += member.size
    except READ_ERRORS as exc:
        raise _damaged(exc) from None
    return files, kept


def receive_archive(stream: BinaryIO, dest: Path, *, max_bytes: int, max_unpacked: int) -> int:
    """Copy an upload into `dest` (a new 0600 file) in `CHUNK`-sized pieces and take the quick
    look; on a refusal nothing is left. Returns the archive's size in bytes."""
    received = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise ArchiveError(_l("The archive is too large: the limit is %(mib)s MiB.",
                                          mib=max_bytes // (1024 * 1024)))
                out.write(chunk)
        if not received:
            raise ArchiveError(_l("The file is empty; choose a .tar.gz, .tgz, .tar or .zip "
                                  "archive."))
        _walk(_members(dest, budget=QUICK_LOOK_BYTES), max_unpacked, None)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return received


def clean_archive_file(source: Path, dest: Path, *, max_unpacked: int) -> CleanFile:
    """Check every member of the archive at `source` and write the clean tar to `dest` (0600),
    holding one `CHUNK` at a time; on a refusal `dest` is removed."""
    try:
        with open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh, \
                tarfile.open(fileobj=_Sink(fh), mode="w", format=tarfile.PAX_FORMAT,
                             copybufsize=CHUNK) as out:
            files, total = _walk(_members(source), max_unpacked, out)
            if files == 0:
                raise ArchiveError(_l("The archive contains no file."))
    except _WriteFailed as exc:
        dest.unlink(missing_ok=True)
        raise OSError(f"writing {dest.name}: {exc}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return CleanFile(path=dest, files=files, total_bytes=total)


def clean_archive(stream: BinaryIO, *, max_bytes: int, max_unpacked: int) -> CleanArchive:
    """Read at most `max_bytes` from `stream`; refuse anything unsafe; return a normalised tar
    (held in memory: for small archives; uploads go through the two steps above)."""
    with tempfile.TemporaryDirectory(prefix="archive-") as folder:
        received = Path(folder) / "received"
        receive_archive(stream, received, max_bytes=max_bytes, max_unpacked=max_unpacked)
        clean = clean_archive_file(received, Path(folder) / "clean.tar",
                                   max_unpacked=max_unpacked)
        return CleanArchive(data=clean.path.read_bytes(), files=clean.files,
                            total_bytes=clean.total_bytes)
