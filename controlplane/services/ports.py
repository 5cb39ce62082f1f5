"""Host ports published by services (databases, SFTP side-cars), unique and free on the host."""
from __future__ import annotations

import socket

from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Service
from controlplane.worker import queue


def allocate_port(svc, key: str, kinds: tuple[str, ...], port_range: tuple[int, int],
                  publish_ip: str, what: str) -> int:
    """A host port for `svc`, kept in svc.params[key]: free on the host, unique among the live
    services of `kinds`. A Redis lock makes concurrent workers pick different ports."""


    if (svc.params or {}).get(key):
        return int(svc.params[key])
    low, high = (int(v) for v in port_range)
    with queue.redis_connection().lock(f"controlplane:lock:port:{key}", timeout=30,
                                       blocking_timeout=30):
        used = {int(other.params[key]) for other in db.session.scalars(select(Service).where(
            Service.kind.in_(kinds), Service.status != "deleted")) if (other.params or {}).get(key)}
        for port in range(low, high + 1):
            if port in used:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((publish_ip, port))
                except OSError:
                    continue
            svc.params = dict(svc.params or {}, **{key: port})
            db.session.commit()
            return port
    raise RuntimeError(f"no free port left in {low}-{high} for {what}")
