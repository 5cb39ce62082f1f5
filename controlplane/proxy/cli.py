"""`controlplane proxy ensure`."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from controlplane.proxy import front


@click.group("proxy")
def proxy_cli() -> None:
    """The front proxy."""


@proxy_cli.command("ensure")
@with_appcontext
def proxy_ensure() -> None:
    """Create or repair the front proxy container."""
    front.ensure_proxy()
    click.echo(f"proxy: {current_app.config['PROXY_BIND']}:{current_app.config['PROXY_PORT']}")
