"""Cost of one metering sweep vs `docker stats --no-stream` over the same running containers.

Starts N small hardened containers (default 200: comgov/base:bookworm, `sleep infinity`,
16 MiB each, created in parallel), then times `provisioners.docker.metering.sweep` (median of 5)
and `docker stats --no-stream <ids>` (median of 3) in the same run. Prints both and the
ratio. Targets: a sweep under 0.5 s and at least 10x faster than the baseline. Everything
created carries a bench prefix label and is removed at the end, Ctrl-C included.

    .venv/bin/python bench/metering.py [--containers 200]
"""
from __future__ import annotations

import argparse
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_LABELS = {"bi.gov.comgov.bench": "1"}
SWEEPS = 5
BASELINE_RUNS = 3
WORKERS = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="threads creating and removing containers")
    args = parser.parse_args()

    import docker

    from devtools import devstack
    from provisioners.docker import metering, runtime
    from provisioners.docker.runtime import ContainerSpec, Limits
    from provisioners.images import build as images

    devstack.ensure_dockerd(Path(tempfile.gettempdir()) / "bench-dockerd.log")
    client = docker.from_env(timeout=300)
    images.ensure_base_image(client, Path(tempfile.mkdtemp(prefix="bench-base-")))
    prefix = "bench" + secrets.token_hex(3)
    network = f"{prefix}-net-1"
    limits = Limits(memory_bytes=16 * 1024 * 1024, nano_cpus=100_000_000, pids=8)
    signal.signal(signal.SIGTERM, interrupt)

    def create(i: int) -> str:
        spec = ContainerSpec(
            name=f"{prefix}-idle-{i}", image=images.BASE_IMAGE, network=network, limits=limits,
            labels=runtime.labels(prefix, "bench", service_id=i, institution="BENCH",
                                  extra=BENCH_LABELS),
            command=["sleep", "infinity"])
        return runtime.ensure_container(client, spec).id

    print(f"prefix {prefix}, cgroup v{metering.cgroup_version()}, "
          f"{args.containers} containers", flush=True)
    pool = ThreadPoolExecutor(max_workers=args.workers)
    started = time.monotonic()
    try:
        runtime.ensure_network(client, network, runtime.labels(prefix, "network",
                                                               extra=BENCH_LABELS))
        futures = [pool.submit(create, i) for i in range(args.containers)]
        ids = [f.result() for f in as_completed(futures)]
        print(f"set-up: {len(ids)} running in {time.monotonic() - started:.1f} s", flush=True)

        metering.sweep(client, prefix=prefix)  # warm-up: page cache, connection pool
        sweep_times, sizes = [], []
        for _ in range(SWEEPS):
            t0 = time.perf_counter()
            samples = metering.sweep(client, prefix=prefix)
            sweep_times.append(time.perf_counter() - t0)
            sizes.append(len(samples))
        t0 = time.perf_counter()
        targets = metering.list_targets(client, prefix)
        list_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        metering.sample_targets(targets, client=client)
        read_time = time.perf_counter() - t0

        t0 = time.perf_counter()
        for container_id in ids:  # what a pid per container would cost through the API
            client.api.inspect_container(container_id)
        inspect_time = time.perf_counter() - t0

        baseline_times = []
        for _ in range(BASELINE_RUNS):
            t0 = time.perf_counter()
            subprocess.run(["docker", "stats", "--no-stream", *ids], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
            baseline_times.append(time.perf_counter() - t0)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        return 130
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leak containers
        cleanup(client, prefix, network, args.workers)
        print(f"total (set-up, runs, clean-up): {time.monotonic() - started:.1f} s", flush=True)

    sweep_s = statistics.median(sweep_times)
    base_s = statistics.median(baseline_times)
    ratio = base_s / sweep_s
    print(f"\ncontainers sampled per sweep: {sorted(set(sizes))}")
    print(f"metering sweep:            median {sweep_s * 1000:8.1f} ms  "
          f"(runs: {', '.join(f'{t * 1000:.1f}' for t in sweep_times)} ms)")
    print(f"  of which one list call:         {list_time * 1000:8.1f} ms, kernel files "
          f"{read_time * 1000:.1f} ms")
    print(f"  (for comparison, one inspect per container: {inspect_time * 1000:.0f} ms)")
    print(f"docker stats --no-stream:  median {base_s * 1000:8.1f} ms  "
          f"(runs: {', '.join(f'{t * 1000:.0f}' for t in baseline_times)} ms)")
    print(f"ratio docker stats / sweep: {ratio:.1f}x")
    print(f"target sweep < 500 ms: {'OK' if sweep_s < 0.5 else 'OVER'};  "
          f"target >= 10x faster: {'OK' if ratio >= 10 else 'UNDER'}")
    return 0


def interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM takes the same way out as Ctrl-C, through the clean-up."""
    raise KeyboardInterrupt


def cleanup(client, prefix: str, network: str, workers: int) -> None:
    """Remove every container of the bench prefix (in parallel), then its network."""
    import docker.errors

    from provisioners.docker import runtime

    t0 = time.monotonic()
    flt = {"label": [f"{runtime.LABEL_PREFIX}={prefix}"]}
    names = [c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters=flt)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda name: runtime.remove_container(client, name), names))
    try:
        runtime.remove_network(client, network)
    except docker.errors.APIError as exc:
        print(f"network {network} not removed: {exc}", file=sys.stderr)
    print(f"clean-up: {len(names)} containers removed in {time.monotonic() - t0:.1f} s",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
