"""The commands that run inside the portal's app (`controlplane audit …`, `person …`, …),
each declared by its domain and gathered here."""
from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext

from controlplane.accounts.cli import person_cli
from controlplane.audit.cli import audit_cli
from controlplane.core import infra
from controlplane.kinds.mail.cli import mail_cli
from controlplane.proxy.cli import proxy_cli
from provisioners.docker import volumes


@click.group("volumes")
def volumes_cli() -> None:
    """Loop-mounted quota volumes."""


@volumes_cli.command("remount")
@with_appcontext
def volumes_remount() -> None:
    """Mount every quota volume again (after a reboot), before containers start using them."""
    root = infra.volumes_root()
    if root and Path(root).exists():
        done = volumes.remount_all(Path(root))
        click.echo(f"volumes: {len(done)} mounted")


def init_app(app) -> None:
    for command in (proxy_cli, audit_cli, mail_cli, volumes_cli, person_cli):
        app.cli.add_command(command)
