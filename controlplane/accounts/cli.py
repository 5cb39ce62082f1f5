"""`controlplane person disable UID`."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from controlplane.audit import trail as audit
from controlplane.core.extensions import db
from controlplane.core.infra import directory_config
from controlplane.core.models import Account
from provisioners.directory import service_accounts


@click.group("person")
def person_cli() -> None:
    """People of the directory."""


@person_cli.command("disable")
@click.argument("uid")
@with_appcontext
def person_disable(uid: str) -> None:
    """Disable a person: no more sign-in, removed from every group in one action."""
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
