"""WTForms forms; every one carries a CSRF token."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length


class ActionForm(FlaskForm):
    """A bare form for buttons: CSRF only."""


class RejectForm(FlaskForm):
    reason = TextAreaField(_l("Reason for the rejection"),
                           validators=[DataRequired(), Length(max=2000)])


class UploadForm(FlaskForm):
    archive = FileField(_l("Site archive (.tar.gz, .tgz, .tar or .zip)"),
                        validators=[FileRequired()])


class AuditFilterForm(FlaskForm):
    class Meta:
        csrf = False

    actor = StringField(_l("Actor"))
    action = StringField(_l("Action"))
