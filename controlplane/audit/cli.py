"""`controlplane audit seal|verify`."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from controlplane.audit import trail


@click.group("audit")
def audit_cli() -> None:
    """The tamper-evident audit trail."""


@audit_cli.command("seal")
@with_appcontext
def audit_seal() -> None:
    """Chain the events written since the last sealing."""
    click.echo(f"sealed {trail.seal()} event(s)")


@audit_cli.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Recompute the chain; exit 1 and name the first event edited, deleted or reordered."""
    result = trail.verify()
    if result.ok:
        click.echo(f"audit trail intact: {result.checked} sealed event(s) verified, "
                   f"{result.unsealed} not sealed yet")
        return
    click.echo(f"audit trail ALTERED: first problem at event #{result.first_bad_id} "
               f"({result.problem}); {result.checked} event(s) verified before it", err=True)
    sys.exit(1)
