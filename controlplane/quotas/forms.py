"""Forms of quotas: an increase request, an institution's plan."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


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
