"""Forms of the approval queue."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length


class RejectForm(FlaskForm):
    reason = TextAreaField(_l("Reason for the rejection"),
                           validators=[DataRequired(), Length(max=2000)])
