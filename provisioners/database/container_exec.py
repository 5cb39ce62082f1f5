"""Commands inside a database container: secrets in the exec's environment, data on stdio.

Nothing secret is ever in an exec's argv (visible in ``ps`` and the engine's API);
passwords travel in the exec's environment and are scrubbed from error messages. Usage::

    out = run(client, "comgov-db-42", ["sh", "-c", SCRIPT], user="999:999",
              environment={"COMGOV_SQL": sql}, secrets=(password,))
    stream_out(client, "comgov-db-42", ["pg_dump", "app"], user="999:999", sink=gz.write)
    stream_in(client, "comgov-db-42", ["psql", "-f", "-"], user="999:999", chunks=reader)
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import docker
import docker.errors

STDOUT, STDERR = 1, 2
ERROR_TAIL = 2000  # characters of stderr kept for an error message
INSPECT_TIMEOUT = 30.0


class DatabaseError(RuntimeError):
    """A database operation failed; the message carries the (scrubbed) server output."""


def run(
    client: docker.DockerClient,
    container: str,
    cmd: list[str],
    *,
    user: str,
    environment: dict[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> str:
    """Run to completion and return stdout; a non-zero exit raises DatabaseError."""
    out: list[bytes] = []
    _exec(client, container, cmd, user=user, environment=environment,
          secrets=tuple(secrets), sink=out.append, chunks=None, timeout=None)
    return b"".join(out).decode("utf-8", "replace")


def stream_out(
    client: docker.DockerClient,
    container: str,
    cmd: list[str],
    *,
    user: str,
    sink: Callable[[bytes], object],
    timeout: float | None = None,
) -> None:
    """Run and hand every stdout chunk to sink (a dump never sits in memory whole)."""
    _exec(client, container, cmd, user=user, environment=None, secrets=(), sink=sink,
          chunks=None, timeout=timeout)


def stream_in(
    client: docker.DockerClient,
    container: str,
    cmd: list[str],
    *,
    user: str,
    chunks: Iterable[bytes],
    timeout: float | None = None,
) -> str:
    """Run with chunks fed to stdin (then EOF); return stdout."""
    out: list[bytes] = []
    _exec(client, container, cmd, user=user, environment=None, secrets=(),
          sink=out.append, chunks=chunks, timeout=timeout)
    return b"".join(out).decode("utf-8", "replace")


def _exec(
    client: docker.DockerClient,
    container: str,
    cmd: list[str],
    *,
    user: str,
    environment: dict[str, str] | None,
    secrets: tuple[str, ...],
    sink: Callable[[bytes], object],
    chunks: Iterable[bytes] | None,
    timeout: float | None,
) -> None:
    try:
        exec_id = client.api.exec_create(
            container, cmd, stdout=True, stderr=True, stdin=chunks is not None, tty=False,
            user=user, environment=environment,
        )["Id"]
    except docker.errors.APIError as exc:
        raise DatabaseError(f"cannot run {cmd[0]} in {container}: {exc.explanation}") from exc
    sock = client.api.exec_start(exec_id, socket=True, tty=False)
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(timeout)  # None: a long silent load (index builds) is not an error
    errors: deque[bytes] = deque()
    error_size = 0
    feeder = None
    feed_error: list[BaseException] = []
    if chunks is not None:
        feeder = threading.Thread(target=_feed, args=(raw, chunks, feed_error), daemon=True)
        feeder.start()
    try:
        for stream, data in _frames(raw):
            if stream == STDOUT:
                sink(data)
            elif stream == STDERR:
                errors.append(data)
                error_size += len(data)
                while error_size - len(errors[0]) > ERROR_TAIL and len(errors) > 1:
                    error_size -= len(errors.popleft())
    except OSError as exc:  # socket.timeout included: silent for longer than timeout
        raise DatabaseError(f"{cmd[0]} in {container}: output stream failed: {exc!r}") from exc
    finally:
        if feeder is not None:
            feeder.join(timeout=5)
        sock.close()
    code = _exit_code(client, exec_id)
    if code != 0:  # before a failed feed: the process ending early is what broke the pipe
        message = b"".join(errors).decode("utf-8", "replace")[-ERROR_TAIL:].strip()
        for secret in secrets:
            if secret:
                message = message.replace(secret, "***")
        raise DatabaseError(f"{cmd[0]} in {container} failed (exit {code}): {message}")
    if feed_error:
        raise DatabaseError(f"{cmd[0]} in {container}: input failed: {feed_error[0]!r}")


def _frames(raw: socket.socket) -> Iterator[tuple[int, bytes]]:
    """Demultiplex the engine's stream (8-byte header: stream id, size) until EOF."""
    while True:
        header = _recv_exactly(raw, 8, eof_ok=True)
        if header is None:
            return
        stream, size = struct.unpack(">BxxxL", header)
        yield stream, _recv_exactly(raw, size) if size else b""


def _recv_exactly(raw: socket.socket, size: int, eof_ok: bool = False) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = raw.recv(min(size - len(data), 1 << 16))
        if not chunk:
            if eof_ok and not data:
                return None
            raise OSError("unexpected end of the exec stream")
        data += chunk
    return bytes(data)


def _feed(raw: socket.socket, chunks: Iterable[bytes], failed: list[BaseException]) -> None:
    """Write stdin, then half-close: the engine closes the process's stdin (EOF)."""
    try:
        for chunk in chunks:
            if chunk:
                raw.sendall(chunk)
    except BaseException as exc:  # reported by the caller once the process has ended
        failed.append(exc)
    finally:
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _exit_code(client: docker.DockerClient, exec_id: str) -> int:
    """The exit code, once the engine has noticed the process ended (bounded wait)."""
    deadline = time.monotonic() + INSPECT_TIMEOUT
    while True:
        info = client.api.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        if time.monotonic() > deadline:
            raise DatabaseError(f"exec {exec_id[:12]} did not finish")
        time.sleep(0.05)
