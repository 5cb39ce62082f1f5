"""Site archives: what is accepted, what is refused and why (pure logic, no services)."""
from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from controlplane.services.archives import ArchiveError, clean_archive

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
