"""The front proxy's spec from settings, its repair, and what a visitor gets through it."""
from __future__ import annotations

from flask import current_app

from controlplane.core import infra
from provisioners import probes, proxy


def proxy_spec() -> proxy.ProxySpec:
    cfg = current_app.config
    size = current_app.extensions["policies"].platform["proxy"]
    return proxy.ProxySpec(image=infra.image_ref(cfg["SITE_IMAGE"]), bind=cfg["PROXY_BIND"],
                           port=int(cfg["PROXY_PORT"]), limits=infra.limits(size),
                           **infra.common())


def ensure_proxy() -> None:
    proxy.ensure_proxy(infra.docker_client(), proxy_spec())


def probe_through_proxy(hostname: str, path: str = "/") -> tuple[bool, str]:
    """What a visitor gets: an HTTP GET through the front proxy with the service's host name."""
    bind = current_app.config["PROXY_BIND"]
    result = probes.http_probe(bind if bind not in ("0.0.0.0", "") else "127.0.0.1",
                               int(current_app.config["PROXY_PORT"]), host_header=hostname,
                               path=path)
    return result.ok, f"HTTP {result.detail} ({result.latency_ms:.0f} ms)"
