"""Forms of official mail: the (empty) request, mailboxes and aliases."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange


class MailRequestForm(FlaskForm):
    """Nothing to choose: the domain is the institution's."""


class MailboxForm(FlaskForm):
    local = StringField(_l("Address (before the @)"), validators=[DataRequired(), Length(max=64)])
    quota_mib = IntegerField(_l("Storage quota (MiB)"), validators=[DataRequired(),
                                                                    NumberRange(min=1)])


class AliasForm(FlaskForm):
    local = StringField(_l("Alias (before the @)"), validators=[DataRequired(), Length(max=64)])
    targets = TextAreaField(_l("Delivered to (addresses of your institution, one per line)"),
                            validators=[DataRequired(), Length(max=4000)])
