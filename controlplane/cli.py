"""The `controlplane` command: Flask's CLI plus platform commands (worker, demo, proxy, policy)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext


def _create_app():
    """The app; a broken policy file stops every command with its message, not a traceback."""
    import policies

    from controlplane import create_app

    try:
        return create_app()
    except policies.PolicyError as exc:
        click.echo(f"policy error: {exc}", err=True)
        sys.exit(2)


@click.group(cls=FlaskGroup, create_app=_create_app)
def main() -> None:
    """COMGOV hosting control plane."""


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.option("--fork", is_flag=True, help="Run each job in a forked process (isolation over "
              "speed; costs about 150 ms per job).")
@with_appcontext
def worker(burst: bool, fork: bool) -> None:
    """Run an RQ worker for the provisioning queue.

    Jobs are short orchestration calls (Docker and LDAP requests), so by default they run in
    the worker's own process, reusing its Docker client and database connections.
    """
    from rq import SimpleWorker, Worker

    from controlplane.core import infra
    from controlplane.services import jobs
    from controlplane.worker import queue as tasks
    from controlplane.core.extensions import db

    import provisioners.proxy  # noqa: F401 - imported once here, not in every forked job
    import provisioners.website.site  # MOVED from provisioners.website  # noqa: F401

    app = current_app._get_current_object()
    jobs.set_app(app)
    # One Docker client (its API version negotiated once); forks open their own connections.
    infra.docker_client().api.close()
    if fork:
        engine = db.engine
        # Each job runs in a fork: it must not reuse the parent's database connections.
        os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    cls = Worker if fork else SimpleWorker
    w = cls([app.config["RQ_QUEUE"]], connection=tasks.redis_connection())
    w.work(burst=burst, logging_level=app.config.get("LOG_LEVEL", "INFO"))


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Enqueue what is due and exit.")
@with_appcontext
def scheduler_cmd(once: bool) -> None:
    """Enqueue the periodic jobs (audit sealing, metering, health, backups, retention)."""
    from controlplane.worker import scheduler

    scheduler.run(current_app._get_current_object(), once=once)


@click.group("proxy")
def proxy_cli() -> None:
    """The front proxy."""


@proxy_cli.command("ensure")
@with_appcontext
def proxy_ensure() -> None:
    """Create or repair the front proxy container."""
    from controlplane.core import infra

    infra.ensure_proxy()
    click.echo(f"proxy: {current_app.config['PROXY_BIND']}:{current_app.config['PROXY_PORT']}")


@click.group("audit")
def audit_cli() -> None:
    """The tamper-evident audit trail."""


@audit_cli.command("seal")
@with_appcontext
def audit_seal() -> None:
    """Chain the events written since the last sealing."""
    from controlplane.audit import trail as audit

    click.echo(f"sealed {audit.seal()} event(s)")


@audit_cli.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Recompute the chain; exit 1 and name the first event edited, deleted or reordered."""
    from controlplane.audit import trail as audit

    result = audit.verify()
    if result.ok:
        click.echo(f"audit trail intact: {result.checked} sealed event(s) verified, "
                   f"{result.unsealed} not sealed yet")
        return
    click.echo(f"audit trail ALTERED: first problem at event #{result.first_bad_id} "
               f"({result.problem}); {result.checked} event(s) verified before it", err=True)
    sys.exit(1)


@click.group("mail")
def mail_cli() -> None:
    """The shared mail platform."""


@mail_cli.command("ensure")
@with_appcontext
def mail_ensure() -> None:
    """Create or repair the mail platform (Postfix + Dovecot) and its directory account."""
    from controlplane.kinds.mail import mailboxes as mail

    if not current_app.config.get("MAIL_SERVICE_PASSWORD"):
        click.echo("mail: MAIL_SERVICE_PASSWORD is not set; the mail platform is not started")
        return
    mail.ensure_platform()
    cfg = current_app.config
    click.echo(f"mail: SMTP {cfg['MAIL_PUBLISH_IP']}:{cfg['MAIL_SMTP_PORT']}, "
               f"IMAP {cfg['MAIL_PUBLISH_IP']}:{cfg['MAIL_IMAP_PORT']}")


@click.command("firewall")
def firewall_cmd() -> None:
    """Forbid tenant containers to open connections to the host itself (iptables, as root)."""
    from provisioners.docker import firewall

    if firewall.ensure_host_isolation():
        click.echo("firewall: tenant containers cannot reach services of the host")
    else:
        click.echo("firewall: iptables not usable (run as root); host services stay reachable "
                   "from containers", err=True)


@click.group("volumes")
def volumes_cli() -> None:
    """Loop-mounted quota volumes."""


@volumes_cli.command("remount")
@with_appcontext
def volumes_remount() -> None:
    """Mount every quota volume again (after a reboot), before containers start using them."""
    from pathlib import Path

    from provisioners.docker import volumes

    from controlplane.core import infra

    root = infra.volumes_root()
    if root and Path(root).exists():
        done = volumes.remount_all(Path(root))
        click.echo(f"volumes: {len(done)} mounted")


@click.group("person")
def person_cli() -> None:
    """People of the directory."""


@person_cli.command("disable")
@click.argument("uid")
@with_appcontext
def person_disable(uid: str) -> None:
    """Disable a person: no more sign-in, removed from every group in one action."""
    from provisioners.directory import service_accounts

    from controlplane.audit import trail as audit
    from controlplane.accounts.views import directory_config
    from controlplane.core.extensions import db
    from controlplane.core.models import Account

    try:
        groups = service_accounts.disable_person_everywhere(directory_config(), uid)
    except ValueError as exc:
        click.echo(f"person: {exc}", err=True)
        sys.exit(1)
    account = db.session.scalar(db.select(Account).where(Account.username == uid))
    if account is not None:
        audit.record("account.disabled", account, after={"groups_left": groups})
        db.session.commit()
    click.echo(f"{uid} disabled; removed from {len(groups)} group(s)")


@click.group("policy")
def policy_cli() -> None:
    """Policy files."""


@policy_cli.command("check")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None)
def policy_check(directory: str | None) -> None:
    """Validate the policy files; the error names the file and the field."""
    import policies

    try:
        loaded = policies.load(directory)
    except policies.PolicyError as exc:
        click.echo(f"policy error: {exc}", err=True)
        sys.exit(1)
    for kind, sizes in loaded.sizes.items():
        entry = loaded.catalogue[kind]
        state = "enabled" if entry.enabled else "disabled"
        image = entry.image or "images from " + ", ".join(entry.registries + entry.images)
        click.echo(f"{kind}: sizes {', '.join(sizes)}; {state}; {image}")
    box = loaded.mailbox
    click.echo(f"mailbox: {box.min_mib}-{box.max_mib} MiB (default {box.default_mib})")
    for name, plan in loaded.plans.items():
        quota = plan.quota
        services = ", ".join(f"{k} {n}" for k, n in quota.to_dict()["services"].items())
        click.echo(f"plan {name} ({plan.display('en')}): cpu {quota.cpu:g}, "
                   f"memory {quota.memory_mib} MiB, disk {quota.disk_mib} MiB, {services}, "
                   f"mailboxes {quota.mailboxes} ({quota.mail_storage_mib} MiB)")
    rules = ", ".join(f"{rule.name}={rule.approvals}" for rule in loaded.approval)
    click.echo(f"approval rules (first match wins): {rules}")
    click.echo("policies OK")


def init_app(app) -> None:
    app.cli.add_command(worker)
    app.cli.add_command(scheduler_cmd)
    app.cli.add_command(proxy_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(mail_cli)
    app.cli.add_command(volumes_cli)
    app.cli.add_command(person_cli)


# Commands that must work even when the app cannot be built (bad policy file, no instance yet).
main.add_command(policy_cli)
main.add_command(firewall_cmd)
