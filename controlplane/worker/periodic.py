"""The periodic jobs the scheduler enqueues (each runs inside a worker)."""
from __future__ import annotations

import logging

from controlplane.services.jobs import _context

log = logging.getLogger(__name__)


def seal_audit() -> int:
    """Chain the audit events written since the last run."""
    from controlplane.audit import trail as audit

    with _context():
        return audit.seal()


def meter() -> int:
    """Sample every managed container once and store the readings."""
    from controlplane.quotas import allocation as quotas
    from controlplane.monitoring import usage

    with _context():
        count = usage.sample_all()
        quotas.check_warnings()
        return count


def rollup_usage() -> int:
    from controlplane.monitoring import usage

    with _context():
        return usage.rollup()


def check_health() -> int:
    from controlplane.monitoring import health

    with _context():
        return health.check_all()


def scheduled_backups() -> int:
    from controlplane.backups import store as backups

    with _context():
        return backups.run_due()


def purge_expired() -> int:
    from controlplane.backups import store as backups
    from controlplane.monitoring import usage

    with _context():
        return backups.purge_expired() + usage.purge_old()


def mail_usage() -> int:
    """Mailbox storage used, for quota warnings and statements."""
    from flask import current_app

    from controlplane.kinds.mail import mailboxes as mail

    with _context():
        if not current_app.config.get("MAIL_SERVICE_PASSWORD"):
            return 0
        return mail.refresh_usage()
