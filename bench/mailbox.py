"""Mailbox: from the focal point's action to the first IMAP login, vs a bare LDAP add.

Ours: `controlplane.kinds.mail.mailboxes.create_mailbox` (the portal's action: institution lock, quota
decision, directory entry, database row, audit) until an IMAP login (STARTTLS + LOGIN) with
the new password succeeds. Baseline, same run, interleaved: an ldap3 add of the same entry
followed by the same login. Prints the medians and the ratio. Target: <= 1.5.

    .venv/bin/python bench/mailbox.py [--rounds 10]
"""
from __future__ import annotations

import argparse
import imaplib
import ssl
import statistics
import sys
import time

from harness import platform, wait_until


def login_ok(port: int, address: str, password: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=5)
        imap.starttls(ssl_context=ctx)
        imap.login(address, password)
        imap.logout()
        return True
    except (imaplib.IMAP4.error, OSError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    from controlplane.core.extensions import db
    from controlplane.core.models import Request
    from controlplane.core.infra import directory_config
    from controlplane.kinds.mail import mailboxes as mail
    from controlplane.kinds.mail.platform import ensure_platform
    from controlplane.requests.lifecycle import approve_request, submit_request
    from controlplane.services.jobs import run_service_action
    from devtools import devstack
    from provisioners.directory import tree as directory
    from provisioners.images import build as images
    from provisioners.mail import mailboxes

    ours, bare = [], []
    with platform({"mailboxes": 10 * args.rounds}) as h:
        images.ensure_image(h.client, "mail")
        slapd_dir = next(h.work.glob("slapd"))
        h.app.config.update(
            MAIL_SERVICE_PASSWORD="bench-" + "x" * 20,
            LDAP_LDAPI_DIR=str(devstack.default_ldapi_path(slapd_dir).parent),
            MAIL_SMTP_PORT=devstack.free_port(), MAIL_IMAP_PORT=devstack.free_port(),
            MAIL_SUBMISSION_PORT=devstack.free_port())
        ensure_platform()
        req = submit_request(h.focal_point, "mail", {})
        svc = approve_request(h.operator, db.session.get(Request, req.id))
        run_service_action(svc.id, "provision")
        port = h.app.config["MAIL_IMAP_PORT"]
        cfg = directory_config()
        password = "Bench-pass-0123456789"

        def bare_add(i: int) -> float:
            address = f"direct{i}@bench.gov.bi"
            start = time.monotonic()
            conn = directory.admin_connection(cfg)
            try:
                assert conn.add(f"mail={address},{mailboxes.mail_container_dn(cfg, 'BENCH')}",
                                ["top", "comgovMailbox"],
                                {"mail": address, "mailQuotaBytes": str(256 << 20),
                                 "mailEnabled": "TRUE",
                                 "userPassword": directory.hash_password(password)}), conn.result
            finally:
                conn.unbind()
            return wait_until(lambda: login_ok(port, address, password), 30, 0.005) - start

        def portal(i: int) -> float:
            start = time.monotonic()
            box, secret = mail.create_mailbox(h.focal_point, f"portal{i}", 256)
            address = box.address
            db.session.commit()
            return wait_until(lambda: login_ok(port, address, secret), 30, 0.005) - start

        bare_add(0)  # warm-up: the login path (not counted)
        portal(0)
        for i in range(1, args.rounds + 1):
            ours.append(portal(i))
            bare.append(bare_add(i))
            print(f"round {i:>2}: portal {ours[-1] * 1000:6.1f} ms   bare LDAP add "
                  f"{bare[-1] * 1000:6.1f} ms", flush=True)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"\nmailbox: p50 ours {statistics.median(ours) * 1000:.1f} ms   bare add + login "
          f"{statistics.median(bare) * 1000:.1f} ms   ratio {ratio:.2f}  "
          f"{'OK' if ratio <= 1.5 else 'OVER'} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
