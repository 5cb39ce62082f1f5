"""Approval-to-answer latency of a website vs a plain `docker run` of the same image.

For N websites (default 20): time from the operator's approval (the same call the portal
makes) to the URL answering 200 through the front proxy, with a real forking RQ worker,
Redis and Docker. Baseline, measured in the same run and interleaved: docker-py
`containers.run` of the same image with the same hardened options and a published port, to
its first 200. Prints p50/p95 of both and the ratio. Target: our p50 <= 1.5 x the plain p50.

    .venv/bin/python bench/provision_latency.py [--sites 20]
"""
from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def wait_200(port: int, host: str | None = None, timeout: float = 30.0) -> float:
    """Poll GET / every 10 ms on a new connection (a first visit); return when it answers 200.

    http.client rather than requests: the poller must cost little CPU, or on two cores it
    slows down what it measures.
    """
    headers = {"Host": host} if host else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/", headers=headers)
            if conn.getresponse().status == 200:
                return time.monotonic()
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.01)
    raise RuntimeError(f"127.0.0.1:{port} ({host}) never answered 200")


def docker_run_argv(options: dict) -> list[str]:
    """The `docker run` command line equivalent to the platform's hardened options."""
    argv = ["docker", "run", "-d", "--name", options["name"],
            "--memory", str(options["mem_limit"]), "--memory-swap", str(options["memswap_limit"]),
            "--cpus", str(options["nano_cpus"] / 1e9), "--pids-limit", str(options["pids_limit"]),
            "--read-only", "--ipc", options["ipc_mode"],
            "--restart", options["restart_policy"]["Name"], "--network", options["network"]]
    argv += [a for cap in options["cap_drop"] for a in ("--cap-drop", cap)]
    argv += [a for opt in options["security_opt"] for a in ("--security-opt", opt)]
    argv += [a for path, opts in options["tmpfs"].items() for a in ("--tmpfs", f"{path}:{opts}")]
    argv += [a for k, v in options["labels"].items() for a in ("--label", f"{k}={v}")]
    for name, mount in options["volumes"].items():
        argv += ["-v", f"{name}:{mount['bind']}:{mount['mode']}"]
    for port, (ip, host_port) in options["ports"].items():
        argv += ["-p", f"{ip}:{host_port}:{port.split('/')[0]}"]
    if options.get("user"):
        argv += ["--user", options["user"]]
    argv += ["--log-opt", "max-size=" + options["log_config"].config["max-size"]]
    argv.append(options["image"])
    return argv


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=20)
    args = parser.parse_args()

    import docker
    import docker.errors

    from controlplane import devstack

    devstack.ensure_dockerd(Path(tempfile.gettempdir()) / "bench-dockerd.log")
    client = docker.from_env(timeout=120)
    work = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    prefix = "bench" + secrets.token_hex(3)
    redis_port, proxy_port = devstack.free_port(), devstack.free_port()
    redis = devstack.start_redis(work / "redis", redis_port)
    instance = work / "instance"
    instance.mkdir()
    (instance / "settings.py").write_text(
        f"REDIS_URL = 'redis://127.0.0.1:{redis_port}/0'\n"
        f"DOCKER_PREFIX = {prefix!r}\n"
        f"PROXY_PORT = {proxy_port}\n"
        "DOCKER_EXTRA_LABELS = {'bi.gov.comgov.bench': '1'}\n"
        "LOG_LEVEL = 'WARNING'\n")
    os.environ["CONTROLPLANE_INSTANCE"] = str(instance)
    env = dict(os.environ)
    cli = str(Path(sys.executable).with_name("controlplane"))
    subprocess.run([cli, "db", "upgrade"], check=True, env=env, capture_output=True)
    worker = subprocess.Popen([cli, "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(work / "worker.log", "w"))
    ours: list[float] = []
    plain: list[float] = []
    plain_volumes: list[str] = []
    plain_api: list[float] = []
    try:
        from controlplane import create_app
        from controlplane.extensions import db
        from controlplane.lifecycle import approve_request, submit_website
        from controlplane.models import Account, Institution
        from provisioners.runtime import Limits, hardened_options
        from provisioners.website import WebsiteSpec, website_container_spec

        app = create_app()
        with app.app_context():
            inst = Institution(acronym="BENCH", name="Bench", domain="bench.gov.bi")
            db.session.add(inst)
            db.session.flush()
            fp = Account(username="bench.fp", dn="uid=bench.fp", role="focal_point",
                         institution_id=inst.id)
            op = Account(username="bench.op", dn="uid=bench.op", role="operator")
            db.session.add_all([fp, op])
            db.session.commit()
            size = app.extensions["policies"].size("website", "S")
            limits = Limits(size.memory_bytes, size.nano_cpus, size.pids)
            image = app.config["SITE_IMAGE"]

            def one_site(i: int) -> float:
                host = f"site{i}.bench.gov.bi"
                req = submit_website(fp, host, "S")
                start = time.monotonic()
                svc = approve_request(op, req)
                approved = time.monotonic()
                end = wait_200(proxy_port, host)
                if os.environ.get("BENCH_DETAIL"):
                    from rq.job import Job
                    from controlplane import tasks

                    time.sleep(0.3)
                    job = Job.fetch(f"service-{svc.id}-provision", connection=tasks.redis_connection())
                    print(f"   approve {1000 * (approved - start):.0f} ms, queue wait "
                          f"{(job.started_at - job.enqueued_at).total_seconds() * 1000:.0f} ms, job "
                          f"{(job.ended_at - job.started_at).total_seconds() * 1000:.0f} ms")
                return end - start

            def one_plain(i: int, cli_baseline: bool = True) -> float:
                port = devstack.free_port()
                site = WebsiteSpec(service_id=100000 + i, institution_id=inst.id,
                                   institution="BENCH", hostname=f"plain{i}.bench.gov.bi",
                                   limits=limits, prefix=prefix, image=image)
                # The very container specification the platform uses, published directly.
                spec = dataclasses.replace(
                    website_container_spec(site), name=f"{prefix}-plain-{i}", network="bridge",
                    volumes={f"{prefix}-plain-{i}-data": ("/srv/site", "ro")},
                    ports={"8080/tcp": ("127.0.0.1", port)})
                plain_volumes.append(f"{prefix}-plain-{i}-data")
                options = hardened_options(spec)
                start = time.monotonic()
                if cli_baseline:
                    subprocess.run(docker_run_argv(options), check=True, capture_output=True)
                else:
                    client.containers.run(detach=True, **options)
                return wait_200(port) - start

            # Warm-up (not counted): proxy, institution network, image caches.
            one_site(0)
            one_plain(0)
            one_plain(-1, cli_baseline=False)
            for i in range(1, args.sites + 1):
                ours.append(one_site(i))
                plain.append(one_plain(i))
                plain_api.append(one_plain(1000 + i, cli_baseline=False))
                print(f"site {i:>2}: ours {ours[-1] * 1000:7.1f} ms   docker run "
                      f"{plain[-1] * 1000:7.1f} ms   API create+start {plain_api[-1] * 1000:7.1f} ms",
                      flush=True)
    finally:
        devstack.stop_process(worker)
        for c in client.containers.list(all=True, filters={"label": f"bi.gov.comgov.prefix={prefix}"}):
            c.remove(force=True, v=True)
        for v in client.volumes.list(filters={"label": f"bi.gov.comgov.prefix={prefix}"}):
            v.remove(force=True)
        for name in plain_volumes:
            try:
                client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        for n in client.networks.list(filters={"label": f"bi.gov.comgov.prefix={prefix}"}):
            n.remove()
        devstack.stop_process(redis)

    p50_o, p95_o = statistics.median(ours), percentile(ours, 95)
    p50_p, p95_p = statistics.median(plain), percentile(plain, 95)
    p50_a, p95_a = statistics.median(plain_api), percentile(plain_api, 95)
    ratio = p50_o / p50_p
    print(f"\napproval -> URL answering (ours):   p50 {p50_o * 1000:.0f} ms  p95 {p95_o * 1000:.0f} ms")
    print(f"plain `docker run` -> first answer:  p50 {p50_p * 1000:.0f} ms  p95 {p95_p * 1000:.0f} ms")
    print(f"API create+start -> first answer:    p50 {p50_a * 1000:.0f} ms  p95 {p95_a * 1000:.0f} ms")
    print(f"ratio p50 ours / docker run: {ratio:.2f}  (target <= 1.5)  {'OK' if ratio <= 1.5 else 'OVER'}")
    print(f"ratio p50 ours / API create+start (stricter, informative): {p50_o / p50_a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
