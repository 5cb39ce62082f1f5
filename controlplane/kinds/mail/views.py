"""Focal points manage their institution's mailboxes and aliases."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from controlplane.accounts.roles import role_required, scoped_get
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Mailbox
from controlplane.kinds.mail import mailboxes as mail
from controlplane.kinds.mail.forms import AliasForm, MailboxForm
from controlplane.kinds.mail.kind import mail_service

bp = Blueprint("mailboxes", __name__, url_prefix="/portal/mail")


def _page(status: int = 200, **forms):
    inst = current_user.institution
    rows = db.session.scalars(select(Mailbox).where(Mailbox.institution_id == inst.id)
                              .order_by(Mailbox.is_alias, Mailbox.address)).all()
    limits = current_app.extensions["policies"].mailbox
    box_form = forms.get("box_form") or MailboxForm(quota_mib=limits.default_mib)
    alias_form = forms.get("alias_form") or AliasForm()
    return render_template("kinds/mail/mail.html", rows=rows, box_form=box_form,
                           alias_form=alias_form, form=ActionForm(), service=mail_service(inst),
                           limits=limits, password=forms.get("password"),
                           password_for=forms.get("password_for")), status


@bp.route("/")
@role_required("focal_point")
def index():
    """Mailboxes and aliases of the institution."""
    return _page()


@bp.route("/mailboxes", methods=["POST"])
@role_required("focal_point")
def create_mailbox():
    """Create a mailbox (within the mailbox count and mail storage quotas)."""
    form = MailboxForm()
    if not form.validate_on_submit():
        return _page(422, box_form=form)
    try:
        box, password = mail.create_mailbox(current_user, form.local.data, form.quota_mib.data)
    except mail.MailError as exc:
        form.local.errors = list(form.local.errors) + [str(exc.message)]
        return _page(422, box_form=form)
    flash(_("Mailbox %(address)s created.", address=box.address), "success")
    return _page(password=password, password_for=box.address)


@bp.route("/aliases", methods=["POST"])
@role_required("focal_point")
def create_alias():
    """Create an alias delivering to mailboxes or aliases of the same institution."""
    form = AliasForm()
    if not form.validate_on_submit():
        return _page(422, alias_form=form)
    try:
        box = mail.create_alias(current_user, form.local.data, form.targets.data)
    except mail.MailError as exc:
        form.local.errors = list(form.local.errors) + [str(exc.message)]
        return _page(422, alias_form=form)
    flash(_("Alias %(address)s created.", address=box.address), "success")
    return redirect(url_for("mailboxes.index"))


@bp.route("/<int:mailbox_id>/<action>", methods=["POST"])
@role_required("focal_point")
def act(mailbox_id: int, action: str):
    """Reset a password, disable, enable or delete a mailbox (or delete an alias)."""
    box = scoped_get(Mailbox, mailbox_id)
    if action not in ("password", "disable", "enable", "delete") or \
            (box.is_alias and action != "delete") or not ActionForm().validate_on_submit():
        abort(404)
    if box.status != "active":
        flash(_("This mailbox is being deleted."), "error")
        return redirect(url_for("mailboxes.index"))
    try:
        if action == "password":
            return _page(password=mail.reset_password(current_user, box),
                         password_for=box.address)
        if action in ("disable", "enable"):
            mail.set_enabled(current_user, box, action == "enable")
        else:
            mail.delete(current_user, box)
    except Exception as exc:  # noqa: BLE001 - directory down: say so, change nothing
        db.session.rollback()
        flash(_("The directory could not be updated (%(error)s); nothing was changed.",
                error=str(exc)[:200]), "error")
    return redirect(url_for("mailboxes.index"))
