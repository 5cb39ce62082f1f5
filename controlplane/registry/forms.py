"""Forms of the registry pages: a new robot account."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional


class RobotForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=32)],
                       description=_l("Lowercase letters, digits and hyphens, e.g. ci or "
                                      "build-server."))
    days = IntegerField(_l("Valid for (days, optional)"),
                        validators=[Optional(), NumberRange(min=1, max=3650)])
    # Operators choose the institution; focal points create robots for their own only.
    institution = SelectField(_l("Institution"), coerce=int, validate_choice=False)
