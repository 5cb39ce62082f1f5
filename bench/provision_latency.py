"""Approval-to-answer latency of a website vs a plain `docker run` of the same image.

For N websites (default 20): time from the approval (size S is approved automatically by
policies/approval.yaml at the end of the submission; the clock starts at the time of its
audit event) to the URL answering 200 through the front proxy, with a real RQ worker process, Redis,
slapd and Docker. Baseline, measured in the same run and interleaved: `docker run` of the
same image with the very container options the platform uses (published on a port), to its
first 200; and, stricter, the same through the Docker API. Prints p50/p95 and the ratios.
Target: our p50 <= 1.5 x the `docker run` p50.

    .venv/bin/python bench/provision_latency.py [--sites 20]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from datetime import timezone

from harness import docker_run, percentile, platform, wait_http, wait_until


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--detail", action="store_true", help="print queue wait and job time")
    args = parser.parse_args()

    from sqlalchemy import select

    from controlplane.core import infra
    from controlplane.core.extensions import db
    from controlplane.core.models import AuditEvent, Request
    from controlplane.requests.lifecycle import submit_website
    from devtools import devstack
    from provisioners.docker.runtime import hardened_options
    from provisioners.website.site import WebsiteSpec, website_container_spec

    ours, plain, plain_api = [], [], []
    grants = {"services.website": 4 * args.sites, "cpu": args.sites}
    with platform(grants) as h:
        size = h.app.extensions["policies"].size("website", "S")
        image = h.app.config["SITE_IMAGE"]

        def one_site(i: int) -> float:
            host = f"site{i}.bench.gov.bi"
            req = submit_website(h.focal_point, host, "S")
            # The clock starts at the approval itself: its audit event's time (size S is
            # approved by the rules at the end of the submission).
            approved = db.session.scalar(select(AuditEvent.at).where(
                AuditEvent.action == "request.approved", AuditEvent.target_id == req.id))
            start = time.monotonic() - (time.time() - approved.replace(
                tzinfo=timezone.utc).timestamp())
            svc = db.session.get(Request, req.id).service
            assert svc is not None, "size S is not approved automatically"
            db.session.commit()  # no read transaction left open while polling
            end = wait_http(h.proxy_port, host)
            # Let the worker finish the job's tail (directory account) before the next round.
            wait_until(lambda: (db.session.expire_all() or True) and
                       db.session.get(Request, req.id).service.status == "running", 60, 0.02)
            db.session.commit()
            if "--detail" in sys.argv:
                from rq.job import Job

                from controlplane.worker import queue as tasks

                time.sleep(0.5)
                job = Job.fetch(f"service-{svc.id}-provision", connection=tasks.redis_connection())
                print(f"    queue wait {(job.started_at - job.enqueued_at).total_seconds() * 1e3:.0f}"
                      f" ms, job {(job.ended_at - job.started_at).total_seconds() * 1e3:.0f} ms")
            return end - start

        def one_plain(i: int, cli: bool = True) -> float:
            port = devstack.free_port()
            site = WebsiteSpec(service_id=100000 + i, institution_id=h.institution.id,
                               institution="BENCH", hostname=f"plain{i}.bench.gov.bi",
                               limits=infra.limits(size), prefix=h.prefix, image=image)
            spec = dataclasses.replace(
                website_container_spec(site), name=f"{h.prefix}-plain-{i}", network="bridge",
                volumes={f"{h.prefix}-plain-{i}-data": ("/srv/site", "ro")},
                ports={"8080/tcp": ("127.0.0.1", port)})
            h.extra_volumes.append(f"{h.prefix}-plain-{i}-data")
            options = hardened_options(spec)
            if cli:
                start = docker_run(options)
            else:
                start = time.monotonic()
                h.client.containers.run(detach=True, **options)
            return wait_http(port) - start

        one_site(0)  # warm-up, not counted: proxy, institution network, caches
        one_plain(0)
        one_plain(-1, cli=False)
        for i in range(1, args.sites + 1):
            ours.append(one_site(i))
            plain.append(one_plain(i))
            plain_api.append(one_plain(1000 + i, cli=False))
            print(f"site {i:>2}: ours {ours[-1] * 1000:7.1f} ms   docker run "
                  f"{plain[-1] * 1000:7.1f} ms   API create+start {plain_api[-1] * 1000:7.1f} ms",
                  flush=True)

    p50_o, p50_p, p50_a = (statistics.median(v) for v in (ours, plain, plain_api))
    ratio = p50_o / p50_p
    print(f"\napproval -> URL answering (ours):   p50 {p50_o * 1000:.0f} ms  "
          f"p95 {percentile(ours, 95) * 1000:.0f} ms")
    print(f"plain `docker run` -> first answer:  p50 {p50_p * 1000:.0f} ms  "
          f"p95 {percentile(plain, 95) * 1000:.0f} ms")
    print(f"API create+start -> first answer:    p50 {p50_a * 1000:.0f} ms  "
          f"p95 {percentile(plain_api, 95) * 1000:.0f} ms")
    print(f"ratio p50 ours / docker run: {ratio:.2f}  (target <= 1.5)  "
          f"{'OK' if ratio <= 1.5 else 'OVER'}")
    print(f"ratio p50 ours / API create+start (stricter, informative): {p50_o / p50_a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
