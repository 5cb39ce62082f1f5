"""The `controlplane` command: Flask's CLI, the domains' commands (see commands.py), and the
commands that need no portal app (worker, scheduler, policy check, firewall)."""
from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup

import policies
from controlplane.app import create_app
from controlplane.worker.cli import scheduler_cmd, worker
from provisioners.docker import firewall


def _create_app():
    """The app; a broken policy file stops every command with its message, not a traceback."""
    try:
        return create_app()
    except policies.PolicyError as exc:
        click.echo(f"policy error: {exc}", err=True)
        sys.exit(2)


@click.group(cls=FlaskGroup, create_app=_create_app)
def main() -> None:
    """COMGOV hosting control plane."""


@click.command("firewall")
def firewall_cmd() -> None:
    """Forbid tenant containers to open connections to the host itself (iptables, as root)."""
    if firewall.ensure_host_isolation():
        click.echo("firewall: tenant containers cannot reach services of the host")
    else:
        click.echo("firewall: iptables not usable (run as root); host services stay reachable "
                   "from containers", err=True)


@click.group("policy")
def policy_cli() -> None:
    """Policy files."""


@policy_cli.command("check")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None)
def policy_check(directory: str | None) -> None:
    """Validate the policy files; the error names the file and the field."""
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


# Commands that must work even when the portal app cannot be built (bad policy file, no
# instance yet), or that build the worker's app rather than the portal's.
for _command in (policy_cli, firewall_cmd, worker, scheduler_cmd):
    main.add_command(_command)
