"""`controlplane mail ensure`."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from controlplane.kinds.mail import platform


@click.group("mail")
def mail_cli() -> None:
    """The shared mail platform."""


@mail_cli.command("ensure")
@with_appcontext
def mail_ensure() -> None:
    """Create or repair the mail platform (Postfix + Dovecot) and its directory account."""
    if not current_app.config.get("MAIL_SERVICE_PASSWORD"):
        click.echo("mail: MAIL_SERVICE_PASSWORD is not set; the mail platform is not started")
        return
    platform.ensure_platform()
    cfg = current_app.config
    click.echo(f"mail: SMTP {cfg['MAIL_PUBLISH_IP']}:{cfg['MAIL_SMTP_PORT']}, "
               f"IMAP {cfg['MAIL_PUBLISH_IP']}:{cfg['MAIL_IMAP_PORT']}")
