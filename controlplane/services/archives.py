"""Check an uploaded site archive and turn it into a clean tar: files and folders only, no escape."""
from __future__ import annotations

import io
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from flask_babel import lazy_gettext as _l

MAX_MEMBERS = 20000


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
    if any("\x00" in p for p in parts):
        raise ArchiveError(_l("The archive contains an invalid file name."))
    return posixpath.join(*parts) if parts else ""


def _members_tar(raw: bytes):
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
            for m in tar:
                if m.issym() or m.islnk():
                    raise ArchiveError(_l("The archive contains a link (%(name)s); links are "
                                          "not allowed, put the file itself.", name=m.name))
                if not (m.isfile() or m.isdir()):
                    raise ArchiveError(_l("The archive contains a special file (%(name)s); only "
                                          "files and folders are allowed.", name=m.name))
                reader = (lambda m=m: tar.extractfile(m).read()) if m.isfile() else None
                yield m.name, m.isdir(), reader, m.size if m.isfile() else 0, m.mtime
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ArchiveError(_l("The archive is damaged or incomplete (%(error)s).",
                              error=str(exc)[:120])) from None


def _members_zip(raw: bytes):
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise ArchiveError(_l("The archive contains a link (%(name)s); links are "
                                          "not allowed, put the file itself.",
                                          name=info.filename))
                if mode not in (0, 0o100000, 0o040000):
                    raise ArchiveError(_l("The archive contains a special file (%(name)s); only "
                                          "files and folders are allowed.", name=info.filename))
                is_dir = info.is_dir()
                reader = None if is_dir else (lambda info=info: _read_zip(zf, info))
                yield info.filename, is_dir, reader, 0 if is_dir else info.file_size, 0
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError) as exc:
        raise ArchiveError(_l("The archive is damaged or incomplete (%(error)s).",
                              error=str(exc)[:120])) from None


def _read_zip(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # Never trust the declared size of a zip member: read one byte past it.
    with zf.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise zipfile.BadZipFile(f"size mismatch for {info.filename}")
    return data


def clean_archive(stream: BinaryIO, *, max_bytes: int, max_unpacked: int) -> CleanArchive:
    """Read at most `max_bytes` from `stream`; refuse anything unsafe; return a normalised tar."""
    raw = stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ArchiveError(_l("The archive is too large: the limit is %(mib)s MiB.",
                              mib=max_bytes // (1024 * 1024)))
    if not raw:
        raise ArchiveError(_l("The file is empty; choose a .tar.gz, .tgz, .tar or .zip archive."))
    if zipfile.is_zipfile(io.BytesIO(raw)):
        members = _members_zip(raw)
    else:
        try:
            tarfile.open(fileobj=io.BytesIO(raw), mode="r:*").close()
        except (tarfile.TarError, EOFError, OSError):
            raise ArchiveError(_l("This file is not an archive; upload a .tar.gz, .tgz, .tar or "
                                  ".zip file of the site's content.")) from None
        members = _members_tar(raw)
    out = io.BytesIO()
    files = total = count = 0
    seen: set[str] = set()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, is_dir, reader, size, mtime in members:
            count += 1
            if count > MAX_MEMBERS:
                raise ArchiveError(_l("The archive has more than %(n)s entries.", n=MAX_MEMBERS))
            clean = _safe_name(name)
            if not clean or clean in seen:
                continue
            seen.add(clean)
            info = tarfile.TarInfo(clean)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = int(mtime or 0)
            if is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            total += size
            if total > max_unpacked:
                raise ArchiveError(_l("Once unpacked the content exceeds the site's disk "
                                      "allowance of %(mib)s MiB; choose a larger size or remove "
                                      "files.", mib=max_unpacked // (1024 * 1024)))
            try:
                data = reader()
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:
                raise ArchiveError(_l("The archive is damaged or incomplete (%(error)s).",
                                      error=str(exc)[:120])) from None
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            files += 1
    if files == 0:
        raise ArchiveError(_l("The archive contains no file."))
    return CleanArchive(data=out.getvalue(), files=files, total_bytes=total)
