"""The database request form."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length


class DatabaseRequestForm(FlaskForm):
    name = StringField(_l("Database name"), validators=[DataRequired(), Length(max=31)],
                       description=_l("Lowercase letters, digits and _, starting with a "
                                      "letter, e.g. dossiers_patients. It is also the user "
                                      "name."))
    size = SelectField(_l("Size"), validators=[DataRequired()], validate_choice=False)
