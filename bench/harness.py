"""Shared set-up for benchmarks: the platform's real pieces in a temporary instance."""
from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass
class Harness:
    app: Any
    client: Any
    prefix: str
    proxy_port: int
    work: Path
    institution: Any
    focal_point: Any
    operator: Any
    extra_volumes: list[str] = field(default_factory=list)


def wait_http(port: int, host: str | None = None, path: str = "/",
              timeout: float = 60.0) -> float:
    """Poll GET every 10 ms on a new connection; return the time it first answers 200.

    http.client rather than requests: the poller must cost little CPU, or on two cores it
    slows down what it measures.
    """
    headers = {"Host": host} if host else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path, headers=headers)
            if conn.getresponse().status == 200:
                return time.monotonic()
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.01)
    raise RuntimeError(f"127.0.0.1:{port} ({host}) never answered 200")


def wait_until(check, timeout: float = 120.0, poll: float = 0.02) -> float:
    """Poll `check()` until it is true; return the time it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(poll)
    raise RuntimeError("condition never became true")


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def docker_run_argv(options: dict) -> list[str]:
    """The `docker run` command line equivalent to the platform's hardened options."""
    argv = ["docker", "run", "-d", "--name", options["name"],
            "--memory", str(options["mem_limit"]), "--memory-swap", str(options["memswap_limit"]),
            "--cpus", str(options["nano_cpus"] / 1e9), "--pids-limit", str(options["pids_limit"]),
            "--read-only", "--ipc", options["ipc_mode"],
            "--restart", options["restart_policy"]["Name"], "--network", options["network"]]
    argv += [a for cap in options["cap_drop"] for a in ("--cap-drop", cap)]
    argv += [a for cap in options.get("cap_add") or () for a in ("--cap-add", cap)]
    argv += [a for opt in options["security_opt"] for a in ("--security-opt", opt)]
    argv += [a for path, opts in options["tmpfs"].items() for a in ("--tmpfs", f"{path}:{opts}")]
    argv += [a for k, v in options["labels"].items() for a in ("--label", f"{k}={v}")]
    argv += [a for k, v in (options.get("environment") or {}).items() for a in ("-e", f"{k}={v}")]
    for name, mount in options["volumes"].items():
        argv += ["-v", f"{name}:{mount['bind']}:{mount['mode']}"]
    for port, (ip, host_port) in options["ports"].items():
        argv += ["-p", f"{ip}:{host_port}:{port.split('/')[0]}"]
    if options.get("user"):
        argv += ["--user", options["user"]]
    argv += ["--log-opt", "max-size=" + options["log_config"].config["max-size"]]
    argv.append(options["image"])
    argv += list(options.get("command") or [])
    return argv


def docker_run(options: dict) -> float:
    """`docker run` the options; returns the start time (before the command)."""
    start = time.monotonic()
    subprocess.run(docker_run_argv(options), check=True, capture_output=True)
    return start


@contextmanager
def platform(grants: dict[str, float] | None = None) -> Iterator[Harness]:
    """Redis, slapd, a database, a real RQ worker process and an institution with room."""
    import docker

    from devtools import devstack

    devstack.ensure_dockerd(Path(tempfile.gettempdir()) / "bench-dockerd.log")
    client = docker.from_env(timeout=300)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    prefix = "bench" + secrets.token_hex(3)
    redis_port, proxy_port = devstack.free_port(), devstack.free_port()
    ldap_port, ldap_password = devstack.free_port(), secrets.token_urlsafe(16)
    redis = devstack.start_redis(work / "redis", redis_port)
    slapd = devstack.start_slapd(work / "slapd", ldap_port, base_dn="dc=gov,dc=bi",
                                 admin_dn="cn=admin,dc=gov,dc=bi", admin_password=ldap_password)
    instance = work / "instance"
    instance.mkdir()
    (instance / "settings.py").write_text(
        f"LDAP_URL = 'ldap://127.0.0.1:{ldap_port}'\n"
        f"LDAP_ADMIN_PASSWORD = {ldap_password!r}\n"
        f"REDIS_URL = 'redis://127.0.0.1:{redis_port}/0'\n"
        f"DOCKER_PREFIX = {prefix!r}\n"
        f"PROXY_PORT = {proxy_port}\n"
        "DOCKER_EXTRA_LABELS = {'bi.gov.comgov.bench': '1'}\n"
        "DB_PORT_RANGE = (21000, 21999)\n"
        "APP_HEALTH_INTERVAL = 1\n"
        "LOG_LEVEL = 'WARNING'\n")
    os.environ["CONTROLPLANE_INSTANCE"] = str(instance)
    env = dict(os.environ)
    cli = str(Path(sys.executable).with_name("controlplane"))
    subprocess.run([cli, "db", "upgrade"], check=True, env=env, capture_output=True)
    worker = subprocess.Popen([cli, "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(work / "worker.log", "w"))
    harness = None
    try:
        from controlplane.core.infra import directory_config
        from controlplane.app import create_app
        from controlplane.core.extensions import db
        from controlplane.core.models import Account, QuotaGrant
        from devtools import demo
        from provisioners.directory import tree as directory

        app = create_app()
        ctx = app.app_context()
        ctx.push()
        directory.ensure_tree(directory_config())
        inst = demo.ensure_institution(directory_config(), "BENCH", "Bench", "bench.gov.bi",
                                       "presidency")
        for resource, amount in (grants or {}).items():
            db.session.add(QuotaGrant(institution_id=inst.id, resource=resource, amount=amount,
                                      justification="benchmark"))
        fp = Account(username="bench.fp", dn="uid=bench.fp", role="focal_point",
                     institution_id=inst.id)
        op = Account(username="bench.op", dn="uid=bench.op", role="operator")
        db.session.add_all([fp, op])
        db.session.commit()
        harness = Harness(app, client, prefix, proxy_port, work, inst, fp, op)
        yield harness
        ctx.pop()
    finally:
        devstack.stop_process(worker)
        cleanup(client, prefix, harness.extra_volumes if harness else [])
        devstack.stop_process(redis)
        devstack.stop_process(slapd)
        for mnt in (instance / "volumes").glob("*.mnt"):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def cleanup(client, prefix: str, volumes: list[str]) -> None:
    import docker.errors

    flt = {"label": f"bi.gov.comgov.prefix={prefix}"}
    for c in client.containers.list(all=True, filters=flt):
        c.remove(force=True, v=True)
    for v in client.volumes.list(filters=flt):
        v.remove(force=True)
    for name in volumes:
        try:
            client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
    for n in client.networks.list(filters=flt):
        try:
            n.remove()
        except docker.errors.APIError:
            pass
