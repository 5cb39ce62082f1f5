"""Write and read a container's configuration volume as tar streams, so no exec is needed."""
from __future__ import annotations

import io
import posixpath
import tarfile
import time
from collections.abc import Callable

import docker.errors
from docker.models.containers import Container


def write_tree(container: Container, root: str, files: dict[str, str],
               secret: Callable[[str], bool] = lambda _path: False) -> None:
    """Put files (relative path -> text) under root, owned by root; secrets get mode 0600."""
    buf = io.BytesIO()
    now = time.time()
    dirs = sorted({posixpath.dirname(p) for p in files} - {""})
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in dirs:
            info = tarfile.TarInfo(directory)
            info.type, info.mtime = tarfile.DIRTYPE, now
            info.mode = 0o700 if directory == "tls" else 0o755
            tar.addfile(info)
        for path, text in sorted(files.items()):
            if path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"unsafe path in configuration: {path!r}")
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), now
            info.mode = 0o600 if secret(path) else 0o644
            tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(root, buf.getvalue()):
        raise RuntimeError(f"put_archive into {container.name}:{root} failed")


def read_tree(container: Container, root: str) -> list[tuple[str, str]]:
    """(path relative to root, text) of every file under root; nothing if root is missing."""
    try:
        stream, _ = container.get_archive(root.rstrip("/") + "/.")
    except docker.errors.NotFound:
        return []
    result = []
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r") as tar:
        for member in tar.getmembers():
            if member.isfile():
                name = member.name.split("/", 1)[1] if "/" in member.name else member.name
                extracted = tar.extractfile(member)
                result.append((name, extracted.read().decode("utf-8", "replace")))
    return result
