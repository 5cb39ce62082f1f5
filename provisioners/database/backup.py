"""Logical backups of tenant databases: gzip'd SQL dumps streamed out of, and into, the server.

Backup: ``pg_dump`` / ``mariadb-dump`` run inside the container as the server's OS user;
their output is streamed (never held in memory) into ``<dest>/<container>-<db>-<UTC>.sql.gz``,
created with mode 0600. Objects and data only: no owners, no grants, no roles.

Restore semantics (the same for both engines):

1. The database is dropped, which cuts the sessions connected to it, and created again
   empty with its owner/grants (the user and its password are left as they are).
2. The dump is streamed into the engine's client. PostgreSQL loads it in a single
   transaction as the tenant's role (``SET ROLE``), so the objects belong to the tenant
   and a failing load leaves the database empty rather than half loaded. MariaDB loads
   statement by statement (its DDL is not transactional): a failing load raises and
   leaves what was loaded so far.

Only dumps made by :func:`backup` are meant to be restored: the client runs with the
server's administrator identity, so a hand-written dump could change anything in
that (single-tenant) server.
"""
from __future__ import annotations

import gzip
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import docker

from provisioners.database import server as db
from provisioners.database.container_exec import run, stream_in, stream_out

log = logging.getLogger(__name__)

CHUNK = 1 << 16
READY_TIMEOUT = 30.0


def backup(client: docker.DockerClient, spec: db.DatabaseSpec, dest_dir: Path, *,
           timeout: float | None = None) -> Path:
    """Dump the database to a new gzip file in dest_dir and return its path."""
    engine = db.engine_of(spec)
    name = db.container_name(spec)
    db.wait_ready(client, spec, timeout=READY_TIMEOUT)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path, fd = _create_exclusive(dest_dir, f"{name}-{spec.db_name}-{stamp}")
    started = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename=path.name[: -len(".gz")], mode="wb", fileobj=raw) as gz:
                stream_out(client, name, engine.dump_cmd(spec.db_name),
                           user=db.exec_user(client, spec), sink=gz.write, timeout=timeout)
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    log.info("event=db.backup service=%s file=%s bytes=%d seconds=%.2f", spec.service_id,
             path.name, path.stat().st_size, time.monotonic() - started)
    return path


def restore(client: docker.DockerClient, spec: db.DatabaseSpec, dump: Path, *,
            timeout: float | None = None) -> None:
    """Drop and recreate the database, then load the dump (see the module docstring)."""
    engine = db.engine_of(spec)
    dump = Path(dump)
    if not dump.is_file():
        raise FileNotFoundError(f"no dump at {dump}")
    name = db.container_name(spec)
    user = db.exec_user(client, spec)
    db.wait_ready(client, spec, timeout=READY_TIMEOUT)
    started = time.monotonic()
    if engine.name == "mariadb":  # DROP DATABASE would wait on their metadata locks
        cmd, env = engine.sessions_sql(spec.username)
        ids = [int(line) for line in run(client, name, cmd, user=user,
                                         environment=env).split() if line.isdigit()]
        if ids:
            cmd, env = engine.kill_sql(ids)
            run(client, name, cmd, user=user, environment=env)
    cmd, env = engine.recreate_sql(spec.db_name, spec.username)
    run(client, name, cmd, user=user, environment=env)

    def chunks() -> Iterator[bytes]:
        yield engine.load_preamble(spec.username)
        with _open_dump(dump) as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    stream_in(client, name, engine.load_cmd(spec.db_name), user=user, chunks=chunks(),
              timeout=timeout)
    log.info("event=db.restore service=%s file=%s seconds=%.2f", spec.service_id, dump.name,
             time.monotonic() - started)


def _create_exclusive(directory: Path, base: str) -> tuple[Path, int]:
    """A new 0600 file; a second backup within the same second gets a -2, -3... suffix."""
    for attempt in range(1, 100):
        suffix = "" if attempt == 1 else f"-{attempt}"
        path = directory / f"{base}{suffix}.sql.gz"
        try:
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
    raise FileExistsError(f"too many backups named {base} in {directory}")


def _open_dump(path: Path):
    """gzip'd or plain SQL, told apart by the gzip magic bytes."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
