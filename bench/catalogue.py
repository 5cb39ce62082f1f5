"""Approval-to-ready time of every container kind vs a plain `docker run` of the same image.

For each kind (website, PostgreSQL, MariaDB, application) and N rounds (default 3): our
time from the approval to ready — the site answers through the proxy, the database server
accepts connections on its published port (pg_isready / the MariaDB greeting), the
application answers its health path through the proxy — against `docker run` of the same
image with the same container options (published on a port) to the same readiness. For
databases it also prints, for information, the time until the issued credentials log in
(the platform has then also created the database and its user). Measured in the same run, interleaved. Prints the p50s and
their ratios. Target: each ratio <= 1.5. The mailbox figure comes from bench/mailbox.py.

    .venv/bin/python bench/catalogue.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import statistics
import subprocess
import sys
import tarfile
import time

from harness import docker_run, platform, tcp_open, wait_http, wait_until

APP_IMAGE = "registry.dc.gov.bi/bench/app:1.0"
SERVER_PL = r"""use strict; use IO::Socket::INET; $| = 1; $SIG{TERM} = sub { exit 0 };
my $srv = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => 9000, Listen => 16,
                                ReuseAddr => 1) or die "listen: $!\n";
while (my $c = $srv->accept) { my $l = <$c>; while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
  print $c "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"; close $c }
"""


def build_app_image(client) -> str:
    """A tiny perl HTTP app from the local base image (perl-base is in minbase: no apt)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("Dockerfile", "FROM comgov/base:bookworm\nCOPY server.pl /srv.pl\n"
                                          "USER 65534:65534\nCMD [\"perl\", \"/srv.pl\"]\n"),
                           ("server.pl", SERVER_PL)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=APP_IMAGE, rm=True)
    return APP_IMAGE


def pg_ready(port: int) -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)],
                          capture_output=True).returncode == 0


def maria_ready(port: int) -> bool:
    """The server greets every new connection first (a handshake, or an error packet when no
    account matches the client's host): any greeting means it accepts connections."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(1)
            return len(sock.recv(4)) == 4
    except OSError:
        return False


def login_works(kind: str, svc, password: str) -> bool:
    port = str(svc.params["host_port"])
    if kind == "postgresql":
        cmd = ["psql", "-h", "127.0.0.1", "-p", port, "-U", svc.name, "-d", svc.name, "-tAc",
               "select 1"]
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="2")
    else:
        cmd = ["mysql", "--protocol=tcp", "-h", "127.0.0.1", "-P", port, "-u", svc.name,
               svc.name, "-e", "select 1", "--connect-timeout=2"]
        env = dict(os.environ, MYSQL_PWD=password)
    return subprocess.run(cmd, env=env, capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="website,postgresql,mariadb,application",
                        help="comma-separated subset")
    args = parser.parse_args()

    from controlplane.core.extensions import db
    from controlplane.core.models import Request, Service
    from controlplane.kinds import registry as kinds
    from controlplane.requests.lifecycle import approve_request, submit_request
    from controlplane.services import credentials
    from devtools import devstack
    from provisioners.docker.runtime import hardened_options

    results: dict[str, tuple[list[float], list[float]]] = {}
    logins: dict[str, list[float]] = {}
    grants = {f"services.{k}": 10 * args.rounds for k in ("website", "postgresql", "mariadb",
                                                          "application")}
    grants.update({"cpu": 20, "memory_mib": 32768, "disk_mib": 200000})
    with platform(grants) as h:
        build_app_image(h.client)

        def approve(kind: str, data: dict) -> tuple[float, Service]:
            start = time.monotonic()
            req = submit_request(h.focal_point, kind, data)
            req = db.session.get(Request, req.id)
            if req.service is None:  # this kind needs an operator: approval starts the clock
                start = time.monotonic()
                approve_request(h.operator, req)
            svc = db.session.get(Request, req.id).service
            db.session.commit()
            return start, svc

        def settle(svc: Service) -> None:
            """Let the worker finish this job (health wait, directory account) before the next
            round, so no round waits in the queue behind the previous one."""
            wait_until(lambda: fresh(svc).status in ("running", "failed"), 120, 0.05)
            db.session.commit()

        def fresh(svc: Service) -> Service:
            db.session.expire_all()
            return db.session.get(Service, svc.id)

        def ours(kind: str, i: int) -> float:
            if kind == "website":
                host = f"w{i}.bench.gov.bi"
                start, svc = approve(kind, {"hostname": host, "size": "S"})
                ready = wait_http(h.proxy_port, host) - start
                settle(svc)
                return ready
            if kind == "application":
                host = f"a{i}.bench.gov.bi"
                start, svc = approve(kind, {"name": f"app{i}", "hostname": host,
                                            "image": APP_IMAGE, "port": 9000,
                                            "health_path": "/", "environment": "",
                                            "database": "", "volume_path": "", "size": "S"})
                ready = wait_http(h.proxy_port, host) - start
                settle(svc)
                return ready
            start, svc = approve(kind, {"name": f"{kind[:5]}{i}x", "size": "S"})
            ready_check = pg_ready if kind == "postgresql" else maria_ready

            def accepting() -> bool:
                current = fresh(svc)
                port = current.params.get("host_port")
                db.session.commit()
                return bool(port and ready_check(int(port)))

            def usable() -> bool:
                current = fresh(svc)
                password = credentials.get(current, "password")
                db.session.commit()
                return bool(password and current.params.get("host_port")
                            and login_works(kind, current, password))
            ready = wait_until(accepting, timeout=180, poll=0.05) - start
            with_login = wait_until(usable, timeout=180, poll=0.05) - start
            logins.setdefault(kind, []).append(with_login)
            settle(svc)
            return ready

        def plain(kind: str, i: int) -> float:
            port = devstack.free_port()
            name = f"{h.prefix}-plain-{kind[:3]}-{i}"
            if kind in ("website", "application"):
                spec_kind = kinds.get(kind)
                fake = Service(id=900000 + i, institution_id=h.institution.id, kind=kind,
                               hostname=f"p{i}.bench.gov.bi", name=f"p{i}", size="S",
                               params={"image": APP_IMAGE, "port": 9000, "health_path": "/"})
                fake.institution = h.institution
                if kind == "website":
                    from provisioners.website.site import website_container_spec
                    cspec = website_container_spec(spec_kind.spec(fake))
                    inner = "8080/tcp"
                else:
                    from provisioners.application.container import application_container_spec
                    cspec = application_container_spec(dataclasses.replace(
                        spec_kind.spec(fake), volume_path=None))
                    inner = "9000/tcp"
                cspec = dataclasses.replace(cspec, name=name, network="bridge",
                                            volumes={f"{name}-data": (list(
                                                cspec.volumes.values())[0][0], "ro")}
                                            if cspec.volumes else {},
                                            ports={inner: ("127.0.0.1", port)})
                h.extra_volumes.append(f"{name}-data")
                start = docker_run(hardened_options(cspec))
                return wait_http(port) - start
            from provisioners.database.server import database_container_spec, image_user
            fake = Service(id=900000 + i, institution_id=h.institution.id, kind=kind,
                           name=f"plain{i}", size="S", params={"username": f"plain{i}"})
            fake.institution = h.institution
            dspec = kinds.get(kind).spec(fake)
            dspec = dataclasses.replace(dspec, disk_bytes=0, volumes_root="")
            cspec = database_container_spec(dspec, image_user(h.client, dspec.image))
            inner = "5432/tcp" if kind == "postgresql" else "3306/tcp"
            cspec = dataclasses.replace(cspec, name=name, network="bridge",
                                        volumes={f"{name}-data": list(cspec.volumes.values())[0]},
                                        ports={inner: ("127.0.0.1", port)})
            h.extra_volumes.append(f"{name}-data")
            start = docker_run(hardened_options(cspec))
            ready = pg_ready if kind == "postgresql" else maria_ready
            return wait_until(lambda: tcp_open(port) and ready(port), timeout=180,
                              poll=0.05) - start

        for kind in args.kinds.split(","):
            ours(kind, 0)  # warm-up, not counted
            plain(kind, 0)
            mine, base = [], []
            for i in range(1, args.rounds + 1):
                mine.append(ours(kind, i))
                base.append(plain(kind, i))
                print(f"{kind:<12} round {i}: ours {mine[-1] * 1000:7.0f} ms   docker run "
                      f"{base[-1] * 1000:7.0f} ms", flush=True)
            results[kind] = (mine, base)

    print()
    worst = 0.0
    for kind, (mine, base) in results.items():
        ratio = statistics.median(mine) / statistics.median(base)
        worst = max(worst, ratio)
        print(f"{kind:<12} p50 ours {statistics.median(mine) * 1000:6.0f} ms   docker run "
              f"{statistics.median(base) * 1000:6.0f} ms   ratio {ratio:.2f}  "
              f"{'OK' if ratio <= 1.5 else 'OVER'}")
    print(f"worst ratio {worst:.2f} (target <= 1.5)")
    for kind, times in logins.items():
        ratio = statistics.median(times) / statistics.median(results[kind][1])
        print(f"{kind:<12} informative: approval -> the issued credentials log in "
              f"{statistics.median(times) * 1000:.0f} ms, ratio {ratio:.2f} to `docker run` ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
