"""Host firewall: tenant containers may not open connections to the host itself.

Docker's own rules isolate bridge networks from each other (FORWARD), but a service of
the host bound to 0.0.0.0 (sshd, an exporter, docker-proxy of a published port) is
reachable from every container through its network's gateway (INPUT). Replies to
connections the host opened stay allowed. Containers still reach each other, the outside
and the front proxy exactly as before: none of that goes through INPUT.
"""
from __future__ import annotations

import logging
import shutil
import subprocess

log = logging.getLogger(__name__)
CHAIN = "COMGOV-TENANTS"
INTERFACES = ("br-+", "docker0")


def _iptables(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("iptables") or "/usr/sbin/iptables"
    return subprocess.run([binary, "-w", *args], capture_output=True, text=True, timeout=30)


def rules() -> list[list[str]]:
    """The chain's content (plain data: tested on its own)."""
    return [["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
            ["-j", "DROP"]]


def ensure_host_isolation() -> bool:
    """Create or re-assert the chain and the INPUT jumps; False (and a warning) without root."""
    if _iptables("-L", "INPUT", "-n").returncode != 0:
        log.warning("event=firewall.unavailable reason=iptables-not-usable")
        return False
    if _iptables("-n", "-L", CHAIN).returncode != 0:
        _iptables("-N", CHAIN)
    _iptables("-F", CHAIN)
    for rule in rules():
        result = _iptables("-A", CHAIN, *rule)
        if result.returncode != 0:
            raise RuntimeError(f"iptables -A {CHAIN} {' '.join(rule)}: {result.stderr.strip()}")
    for interface in INTERFACES:
        jump = ["INPUT", "-i", interface, "-j", CHAIN]
        if _iptables("-C", *jump).returncode != 0:
            result = _iptables("-I", *jump)
            if result.returncode != 0:
                raise RuntimeError(f"iptables -I {' '.join(jump)}: {result.stderr.strip()}")
    log.info("event=firewall.ensured chain=%s", CHAIN)
    return True


def remove_host_isolation() -> None:
    for interface in INTERFACES:
        while _iptables("-C", "INPUT", "-i", interface, "-j", CHAIN).returncode == 0:
            _iptables("-D", "INPUT", "-i", interface, "-j", CHAIN)
    _iptables("-F", CHAIN)
    _iptables("-X", CHAIN)
