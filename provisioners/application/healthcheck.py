"""Application health: a Docker HEALTHCHECK that works with whatever HTTP client an image has.

The probe runs inside the application's image, so it cannot rely on one tool: it
tries curl, wget, python3 (or python), perl and finally bash's ``/dev/tcp``, in that
order, and needs ``/bin/sh``. An image with none of them (distroless) must bring its
own HEALTHCHECK and be provisioned with ``health_path=None``. A 2xx or 3xx answer is
healthy. Port, path, Host header and the fixed helper programs are positional
arguments of ``sh -c``: nothing is ever interpolated into code. Usage::

    options["healthcheck"] = healthcheck_options(9000, "/health", "app.gov.bi", interval=10)
    wait_healthy(client, "comgov-app-42", timeout=120)
"""
from __future__ import annotations

import logging
import time

import docker

log = logging.getLogger(__name__)

WAIT_TIMEOUT = 120.0
HEALTH_TIMEOUT = 5  # seconds per probe
HEALTH_RETRIES = 3
HEALTH_START_PERIOD = 60  # failures while the application boots do not count

_PROBE_SH = r"""u="http://127.0.0.1:$1$2"
if command -v curl >/dev/null 2>&1; then exec curl -fsS -o /dev/null -m 4 -H "Host: $3" "$u"; fi
if command -v wget >/dev/null 2>&1; then exec wget -q -O /dev/null -T 4 --header "Host: $3" "$u"; fi
for py in python3 python; do
  if command -v $py >/dev/null 2>&1; then exec $py -c "$4" "$1" "$2" "$3"; fi
done
if command -v perl >/dev/null 2>&1; then exec perl -e "$5" "$1" "$2" "$3"; fi
if command -v bash >/dev/null 2>&1; then exec bash -c "$6" probe "$1" "$2" "$3"; fi
echo "no HTTP client (curl, wget, python3, perl, bash) in the image" >&2; exit 1
"""
_PROBE_PY = r"""import sys, http.client
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=4)
c.request("GET", sys.argv[2], headers={"Host": sys.argv[3]})
s = c.getresponse().status
print(s)
sys.exit(0 if 200 <= s < 400 else 1)
"""
_PROBE_PL = r"""use IO::Socket::INET; alarm 4; my ($p, $u, $h) = @ARGV;
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $p, Timeout => 4)
  or die "connect: $!\n";
print $s "GET $u HTTP/1.0\r\nHost: $h\r\nConnection: close\r\n\r\n";
my $l = <$s> // ""; print $l;
exit($l =~ m{^HTTP/\d\.\d [23]\d\d} ? 0 : 1);
"""
_PROBE_BASH = r"""exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" "$3" >&3
IFS= read -r -t 4 line <&3 || exit 1
echo "$line"
case "$line" in "HTTP/"[0-9].[0-9]" "[23][0-9][0-9]*) exit 0;; esac
exit 1
"""


class ApplicationUnhealthy(RuntimeError):
    """The container did not become healthy in time; the message says what the probe saw."""


def healthcheck_options(port: int, path: str, host: str, interval: int) -> dict:
    """The HEALTHCHECK in docker-py's `healthcheck=` form (durations in nanoseconds)."""
    second = 1_000_000_000
    return {
        "test": ["CMD", "/bin/sh", "-c", _PROBE_SH, "probe", str(port), path, host,
                 _PROBE_PY, _PROBE_PL, _PROBE_BASH],
        "interval": interval * second,
        "timeout": HEALTH_TIMEOUT * second,
        "retries": HEALTH_RETRIES,
        "start_period": HEALTH_START_PERIOD * second,
    }


def wait_healthy(client: docker.DockerClient, name: str, timeout: float = WAIT_TIMEOUT,
                 poll: float = 0.25) -> None:
    """Poll until the health check passes (or, without one, the container runs); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.containers.get(name).attrs.get("State") or {}
        health = state.get("Health")
        if state.get("Status") in ("exited", "dead"):
            raise ApplicationUnhealthy(f"{name} stopped (exit code {state.get('ExitCode')})"
                                       f"{_last_probe(health)}")
        if state.get("Status") == "running":
            if health is None or health.get("Status") == "healthy":
                log.info("event=application.healthy container=%s", name)
                return
            if health.get("Status") == "unhealthy":
                raise ApplicationUnhealthy(f"{name} is unhealthy{_last_probe(health)}")
        if time.monotonic() > deadline:
            status = (health or {}).get("Status") or state.get("Status")
            log.warning("event=application.unhealthy container=%s status=%s", name, status)
            raise ApplicationUnhealthy(f"{name} not healthy after {timeout:.0f}s "
                                       f"(status {status}){_last_probe(health)}")
        time.sleep(poll)


def _last_probe(health: dict | None) -> str:
    entries = (health or {}).get("Log") or []
    if not entries:
        return ""
    last = entries[-1]
    output = " ".join(str(last.get("Output", "")).split())[:300]
    return f"; last probe exit {last.get('ExitCode')}: {output}"
