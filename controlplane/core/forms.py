"""WTForms forms; every one carries a CSRF token."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional


class ActionForm(FlaskForm):
    """A bare form for buttons: CSRF only."""


class RejectForm(FlaskForm):
    reason = TextAreaField(_l("Reason for the rejection"),
                           validators=[DataRequired(), Length(max=2000)])


class UploadForm(FlaskForm):
    archive = FileField(_l("Site archive (.tar.gz, .tgz, .tar or .zip)"),
                        validators=[FileRequired()])


class QuotaIncreaseForm(FlaskForm):
    resource = SelectField(_l("Resource"), validators=[DataRequired()], validate_choice=False)
    amount = StringField(_l("Additional amount"), validators=[DataRequired(), Length(max=20)],
                         description=_l("CPU in cores (e.g. 1,5); memory and disk in MiB; "
                                        "services and mailboxes as a number."))
    justification = TextAreaField(_l("Justification"),
                                  validators=[DataRequired(), Length(max=4000)])
    ends_on = DateField(_l("Until (optional)"), validators=[Optional()])


class PlanForm(FlaskForm):
    plan = SelectField(_l("Plan"), validators=[DataRequired()], validate_choice=False)


class ImageUploadForm(FlaskForm):
    archive = FileField(_l("Image archive (output of docker save, .tar)"),
                        validators=[FileRequired()])


class MailboxForm(FlaskForm):
    local = StringField(_l("Address (before the @)"), validators=[DataRequired(), Length(max=64)])
    quota_mib = IntegerField(_l("Storage quota (MiB)"), validators=[DataRequired(),
                                                                    NumberRange(min=1)])


class AliasForm(FlaskForm):
    local = StringField(_l("Alias (before the @)"), validators=[DataRequired(), Length(max=64)])
    targets = TextAreaField(_l("Delivered to (addresses of your institution, one per line)"),
                            validators=[DataRequired(), Length(max=4000)])
