"""The website request form."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length


class WebsiteRequestForm(FlaskForm):
    hostname = StringField(_l("Host name"), validators=[DataRequired(), Length(max=253)])
    size = SelectField(_l("Size"), validators=[DataRequired()], validate_choice=False)
