"""`python -m devtools run|images|demo-load`: the developer's and `make run`'s commands."""
from __future__ import annotations

from pathlib import Path

import click

from controlplane.app import create_app
from controlplane.core.infra import directory_config
from devtools import demo
from devtools.platform import platform_cli


@platform_cli.command("demo-load")
def demo_load() -> None:
    """Load three institutions and their people; print the logins the first time only."""
    app = create_app()
    with app.app_context():
        logins = demo.load(directory_config(), Path(app.instance_path))
    if logins is None:
        click.echo("Demo data already loaded; the logins were printed at first start "
                   f"(also in {Path(app.instance_path) / 'demo-logins.txt'}, mode 0600).")
        return
    click.echo("Demo logins (shown once; also saved in instance/demo-logins.txt, mode 0600):")
    for uid, role, password in logins:
        click.echo(f"  {uid:<18} {password:<14} {role}")


if __name__ == "__main__":
    platform_cli(prog_name="python -m devtools")
