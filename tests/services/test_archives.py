"""Site archives: what is accepted, what is refused and why (pure logic, no services)."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from controlplane.services.archives import (
    MAX_EXTENDED_HEADER,
    MAX_EXTENDED_HEADERS,
    MAX_MEMBERS,
    MAX_ZIP_DIRECTORY,
    QUICK_LOOK_BYTES,
    ArchiveError,
    clean_archive,
    clean_archive_file,
    receive_archive,
)

MIB = 1024 * 1024


def make_tar(entries, mode="w:gz") -> bytes:
    """entries: (name, bytes | None for a dir | ('sym'|'hard'|'fifo', target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, tuple):
                kind, target = content
                info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                             "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def make_zip(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries:
            zf.writestr(name, content)
    return buf.getvalue()


def check(data: bytes, max_bytes=10 * MIB, max_unpacked=10 * MIB):
    return clean_archive(io.BytesIO(data), max_bytes=max_bytes, max_unpacked=max_unpacked)


def members(clean) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(clean.data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_tar_gz_is_normalised():
    clean = check(make_tar([("./", None), ("./index.html", b"<h1>Muraho</h1>"),
                            ("./css/", None), ("./css/site.css", b"body{}")]))
    got = members(clean)
    assert set(got) == {"index.html", "css", "css/site.css"}
    assert got["index.html"].mode == 0o644 and got["css"].mode == 0o755
    assert got["index.html"].uid == 0
    assert clean.files == 2 and clean.total_bytes == len(b"<h1>Muraho</h1>") + 6


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_compressions(mode):
    assert check(make_tar([("index.html", b"x")], mode=mode)).files == 1


def test_zip_is_accepted():
    clean = check(make_zip([("site/index.html", "<p>ok</p>"), ("site/a/b.txt", "b")]))
    assert set(members(clean)) == {"site/index.html", "site/a/b.txt"}


@pytest.mark.parametrize("entries, message", [
    ([("/etc/passwd", b"x")], "absolute path"),
    ([("../evil.html", b"x")], "“..”"),
    (([("a/../../evil", b"x")]), "“..”"),
    ([("index.html", b"x"), ("link", ("sym", "/etc/passwd"))], "link"),
    ([("index.html", b"x"), ("hard", ("hard", "index.html"))], "link"),
    ([("pipe", ("fifo", ""))], "special file"),
    ([("empty/", None)], "no file"),
])
def test_unsafe_tar_refused(entries, message):
    with pytest.raises(ArchiveError) as info:
        check(make_tar(entries))
    assert message in str(info.value)


def test_zip_with_traversal_refused():
    with pytest.raises(ArchiveError, match="“..”"):
        check(make_zip([("../../x.html", "x")]))


def test_zip_symlink_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArchiveError, match="link"):
        check(buf.getvalue())


def test_too_large_compressed():
    with pytest.raises(ArchiveError, match="too large"):
        check(make_tar([("big.bin", b"\0" * (2 * MIB))], mode="w"), max_bytes=1 * MIB)


def test_unpacked_beyond_disk_allowance():
    data = make_tar([("zeros.bin", b"\0" * (3 * MIB))])  # compresses to almost nothing
    with pytest.raises(ArchiveError, match="disk allowance"):
        check(data, max_unpacked=2 * MIB)


@pytest.mark.parametrize("data", [b"<html>not an archive</html>", b"\x89PNG\r\n\x1a\n" + b"0" * 100])
def test_not_an_archive(data):
    with pytest.raises(ArchiveError, match="not an archive"):
        check(data)


def test_empty_file():
    with pytest.raises(ArchiveError, match="empty"):
        check(b"")


def test_truncated_archive():
    data = make_tar([("index.html", b"x" * 5000)])
    with pytest.raises(ArchiveError):
        check(data[: len(data) // 2])


# ------------------------------------------------------------------ the two steps, on files

def test_receive_copies_the_upload_and_takes_a_quick_look(tmp_path):
    data = make_tar([("index.html", b"<p>ok</p>")])
    dest = tmp_path / "upload"
    assert receive_archive(io.BytesIO(data), dest, max_bytes=MIB, max_unpacked=MIB) == len(data)
    assert dest.read_bytes() == data
    assert dest.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("data, message", [
    (b"\0" * (2 * MIB), "too large"),
    (b"", "empty"),
    (b"<html>not an archive</html>", "not an archive"),
    (make_tar([("/etc/passwd", b"x")]), "absolute path"),
    (make_tar([("zeros.bin", b"\0" * (3 * MIB))]), "disk allowance"),  # from the header
    (make_zip([("a.html", "a"), ("../../x.html", "x")]), "“..”"),  # a zip's whole directory
])
def test_receive_refuses_and_leaves_nothing(tmp_path, data, message):
    with pytest.raises(ArchiveError, match=message):
        receive_archive(io.BytesIO(data), tmp_path / "upload", max_bytes=MIB,
                        max_unpacked=2 * MIB)
    assert list(tmp_path.iterdir()) == []


def test_quick_look_stops_early_and_the_worker_reads_everything(tmp_path):
    """Past QUICK_LOOK_BYTES the portal lets the archive through; the job refuses it."""
    data = make_tar([("big.bin", os.urandom(2 * QUICK_LOOK_BYTES)), ("/etc/passwd", b"x")])
    received = tmp_path / "upload"
    receive_archive(io.BytesIO(data), received, max_bytes=10 * MIB, max_unpacked=10 * MIB)
    with pytest.raises(ArchiveError, match="absolute path"):
        clean_archive_file(received, tmp_path / "clean.tar", max_unpacked=10 * MIB)
    assert not (tmp_path / "clean.tar").exists()


def test_clean_file_is_a_normalised_tar(tmp_path):
    source = tmp_path / "upload.zip"
    source.write_bytes(make_zip([("site/index.html", "<p>ok</p>"), ("site/a/", ""),
                                 ("site/a/b.txt", "b")]))
    clean = clean_archive_file(source, tmp_path / "clean.tar", max_unpacked=MIB)
    assert (clean.files, clean.total_bytes) == (2, 10)
    assert clean.path.stat().st_mode & 0o777 == 0o600
    with tarfile.open(clean.path) as tar:
        got = {m.name: (m.mode, m.uid) for m in tar.getmembers()}
    assert got == {"site/index.html": (0o644, 0), "site/a": (0o755, 0),
                   "site/a/b.txt": (0o644, 0)}


def test_bomb_is_refused_from_the_header_before_its_data(tmp_path):
    """The second member's declared size goes over: refused before a byte of it is written."""
    source = tmp_path / "bomb.tar.gz"
    with tarfile.open(source, "w:gz") as tar:
        for name in ("one.bin", "two.bin"):
            info = tarfile.TarInfo(name)
            info.size = 3 * MIB
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(ArchiveError, match="disk allowance of 5 MiB"):
        clean_archive_file(source, tmp_path / "clean.tar", max_unpacked=5 * MIB)
    assert not (tmp_path / "clean.tar").exists()


def test_oversized_extended_header_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("index.html")
        info.pax_headers = {"comment": "x" * (MAX_EXTENDED_HEADER + 1)}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="damaged or incomplete .extended header over 1024 KiB"):
        check(buf.getvalue())


def test_overlong_name_refused():
    with pytest.raises(ArchiveError, match="invalid file name"):
        check(make_tar([("a/" * 2100 + "index.html", b"x")]))


def test_old_gnu_sparse_member_refused():
    info = tarfile.TarInfo("sparse.bin")
    info.type = tarfile.GNUTYPE_SPARSE
    data = info.tobuf(tarfile.GNU_FORMAT) + tarfile.NUL * (2 * tarfile.BLOCKSIZE)
    with pytest.raises(ArchiveError, match="special file"):
        check(data)


def test_zip_with_too_many_entries_refused_from_its_directory():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(MAX_MEMBERS + 1):
            zf.writestr(f"{i}.txt", "")
    with pytest.raises(ArchiveError, match="more than 20000 entries"):
        check(buf.getvalue(), max_bytes=50 * MIB)


def test_zip_with_an_oversized_directory_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(MAX_ZIP_DIRECTORY // 4000 + 1):
            zf.writestr(f"{i:05}" + "n" * 4000, "")
    with pytest.raises(ArchiveError, match="damaged or incomplete .zip directory over 8 MiB"):
        check(buf.getvalue(), max_bytes=50 * MIB)


def test_zip_member_longer_than_declared_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", "<p>the real content</p>")
    data = bytearray(buf.getvalue())
    # lower the declared size in the central directory: zipfile stops there, the CRC fails
    at = data.rindex(b"PK\x01\x02") + 24
    data[at:at + 4] = (5).to_bytes(4, "little")
    with pytest.raises(ArchiveError, match="damaged or incomplete .Bad CRC-32"):
        check(bytes(data))


def test_extended_headers_bounded_in_all():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for i in range(MAX_EXTENDED_HEADERS // MAX_EXTENDED_HEADER + 2):
            info = tarfile.TarInfo(f"{i}.html")
            info.pax_headers = {"comment": "x" * (MAX_EXTENDED_HEADER - 1024)}
            tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="extended headers over 16 MiB in all"):
        check(buf.getvalue())


def test_a_duplicate_is_skipped_but_its_size_counts():
    """Its data is unpacked (to be skipped) all the same: no endless work for free."""
    data = make_tar([("a.bin", b"\0" * (3 * MIB)), ("./a.bin", b"\0" * (3 * MIB))])
    with pytest.raises(ArchiveError, match="disk allowance"):
        check(data, max_unpacked=5 * MIB)
    clean = check(data, max_unpacked=6 * MIB)
    assert (clean.files, clean.total_bytes) == (1, 3 * MIB)
