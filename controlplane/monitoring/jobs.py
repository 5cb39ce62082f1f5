"""The periodic jobs of monitoring: metering sweeps, rollups, health checks, sample retention."""
from __future__ import annotations

from controlplane.monitoring import health, usage
from controlplane.quotas.warnings import check_warnings
from controlplane.worker.runner import job


@job()
def meter() -> int:
    """Sample every managed container once, store the readings, then check quota warnings."""
    count = usage.sample_all()
    check_warnings()
    return count


@job()
def rollup_usage() -> int:
    return usage.rollup()


@job()
def check_health() -> int:
    return health.check_all()


@job()
def purge_old_usage() -> int:
    """Samples and rollups past their retention."""
    return usage.purge_old()
